"""A whole training step (the D update, then the G update) captured in a CUDA graph.

A GAN step at the paper shapes is bound by the host, not the GPU: on an H100 the
reference pix2pix step at batch 1 took 14.9 ms of host time for kernels that need far
less (benchmarks/README.md, "Host overhead"). Replaying a captured step launches every
one of its kernels with one call. `--train.cuda_graph true` turns it on; docs/training.md
("CUDA graphs") lists what it needs and what it refuses.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

# Eager steps before the capture: cuDNN's autotuning, lazy initialisation and the optimizers'
# state must all be done when the graph records the step (the first steps are real steps).
WARMUP_STEPS = 3


class _LossRecorder:
    """Stands in for the trainer's LossWatch while the step is captured: the losses the step
    updates on, as the graph's own tensors, which every replay overwrites."""

    def __init__(self):
        self.losses: list[tuple[torch.Tensor, str]] = []

    def add(self, loss: torch.Tensor, which: str, step: int) -> None:
        self.losses.append((loss.detach().float().reshape(1), which))


def _tensors_of(batch: dict) -> dict[str, torch.Tensor]:
    return {key: value for key, value in batch.items() if isinstance(value, torch.Tensor)}


def _detached(logs: dict) -> dict:
    """Logs without their autograd graph: a step's graph kept alive into the next capture leaves
    its AccumulateGrad nodes on the warm-up's stream, which torch warns breaks a capture."""
    return {key: value.detach() for key, value in logs.items()}


class GraphedStep:
    """Runs `step_fn(batch, step, watch)` (the trainer's train_step with everything else bound),
    eagerly for the first WARMUP_STEPS calls, then captured once and replayed. The batch is
    copied into the graph's own input tensors; a batch of other shapes (a short last batch)
    runs eagerly. Each replay hands its losses to `watch` as copies. invalidate() drops the
    graph, e.g. when the learning rate, which the captured optimizer kernels hold as a
    constant, changes: the next call captures again. A step that cannot be captured (it
    reads a device value on the host, say) is said once, with torch's reason, and the run
    goes on eagerly: a capture records kernels without running them, so no update is lost."""

    def __init__(self, step_fn: Callable[[dict, int, object], dict], watch):
        self.step_fn, self.watch = step_fn, watch
        self.warmup_left = WARMUP_STEPS
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batch: dict = {}
        self.static_logs: dict = {}
        self.losses: list[tuple[torch.Tensor, str]] = []
        self.captures = 0  # how many times a step was captured
        self.misfits = 0  # consecutive batches that did not fit the graph
        self.failed: str | None = None  # why a capture failed; every later step then runs eagerly

    def invalidate(self) -> None:
        self.graph, self.static_logs, self.losses = None, {}, []

    def _fits(self, batch: dict) -> bool:
        """Whether the batch has the tensors, shapes and dtypes the graph was captured with."""
        tensors, static = _tensors_of(batch), _tensors_of(self.static_batch)
        return tensors.keys() == static.keys() and all(
            t.shape == static[k].shape and t.dtype == static[k].dtype and t.device == static[k].device
            for k, t in tensors.items())

    def _eager(self, batch: dict, step: int) -> dict:
        # On a side stream, as the warm-up before a capture must be (torch.cuda.graphs docs).
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            logs = _detached(self.step_fn(batch, step, self.watch))
        torch.cuda.current_stream().wait_stream(side)
        return logs

    def _capture(self, batch: dict, step: int) -> None:
        self.invalidate()
        self.static_batch = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        recorder = _LossRecorder()
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        # thread_local: the loader's threads (DALI's executor, pin-memory) go on making CUDA calls,
        # which the default mode would count against the capture; this thread's are still checked.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            logs = self.step_fn(self.static_batch, step, recorder)
        self.graph, self.static_logs, self.losses = graph, _detached(logs), recorder.losses
        self.captures += 1

    def __call__(self, batch: dict, step: int) -> dict:
        if self.warmup_left > 0 or self.failed is not None:
            self.warmup_left = max(0, self.warmup_left - 1)
            return self._eager(batch, step)
        if self.graph is not None and not self._fits(batch):
            self.misfits += 1
            if self.misfits < 2:  # a short last batch, say: the graph stays for the next one
                return self._eager(batch, step)
            self.graph = None  # the batches changed shape for good
        self.misfits = 0
        if self.graph is None:
            try:
                self._capture(batch, step)  # records the step; the replay below takes it
            except RuntimeError as error:  # _capture set nothing but its own invalidate()
                reason = str(error).strip()
                self.failed = reason.splitlines()[0] if reason else type(error).__name__
                warnings.warn(f"fastgan: the training step could not be captured in a CUDA graph ({self.failed}); "
                              f"training goes on without it", RuntimeWarning, stacklevel=2)
                return self._eager(batch, step)
        for key, tensor in _tensors_of(batch).items():
            self.static_batch[key].copy_(tensor, non_blocking=True)
        self.graph.replay()
        for loss, which in self.losses:
            self.watch.add(loss.clone(), which, step)
        return dict(self.static_logs)
