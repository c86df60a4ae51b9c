"""Median-of-samples timing shared by the operator and memory suites."""
from __future__ import annotations

import math
import statistics
import time

import torch


class Timer:
    """Median seconds per call. Calls are batched so that one sample lasts about
    sample_s: CUDA events around the batch on GPU, perf_counter on CPU."""

    MAX_ITERS = 10_000

    def __init__(self, device: str, sample_s: float, reps: int, warmup: int):
        self.cuda = device == "cuda"
        self.sample_s, self.reps, self.warmup = sample_s, reps, warmup

    @classmethod
    def for_device(cls, device: str, quick: bool) -> "Timer":
        if device == "cuda":
            return cls("cuda", sample_s=0.01, reps=7 if quick else 15, warmup=5)
        return cls("cpu", sample_s=0.05, reps=5 if quick else 7, warmup=2)

    def sample(self, step, iters: int) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / iters
        begin = time.perf_counter()
        for _ in range(iters):
            step()
        return (time.perf_counter() - begin) / iters

    def calibrate(self, step) -> tuple[int, float]:
        """(calls per sample, seconds per call) after warm-up, sized on a growing number
        of calls (one call is too noisy to size it)."""
        for _ in range(self.warmup):
            step()
        iters = 1
        per_call = self.sample(step, iters)
        while per_call * iters < self.sample_s / 4 and iters < self.MAX_ITERS:
            iters = min(self.MAX_ITERS, iters * 4)
            per_call = self.sample(step, iters)
        return max(1, min(self.MAX_ITERS, math.ceil(self.sample_s / max(per_call, 1e-9)))), per_call

    def interleave(self, steps: dict[str, tuple]) -> tuple[dict[str, list[float]], dict[str, Exception]]:
        """(samples, errors) of every (step, iters, per_call) in turn, a round at a time, the first
        in each round rotating, so drift in the machine's speed (clocks, heat, neighbours) falls on
        all implementations alike. Stops at `reps` rounds, or at 3 once a deadline of 4x the planned
        time passes, so a noisy machine stretches a case by a bounded amount, never more. A step
        that raises leaves the rounds with its exception in `errors`; the others go on."""
        names = list(steps)
        planned = sum(max(self.sample_s, per_call) for _, _, per_call in steps.values())
        deadline = time.monotonic() + 4 * self.reps * planned
        samples: dict[str, list[float]] = {name: [] for name in names}
        errors: dict[str, Exception] = {}
        for round_ in range(self.reps):
            if round_ >= 3 and time.monotonic() > deadline:
                break
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                if name in errors:
                    continue
                step, iters, _ = steps[name]
                try:
                    samples[name].append(self.sample(step, iters))
                except Exception as exc:
                    errors[name] = exc
        return {name: values for name, values in samples.items() if name not in errors}, errors

    def median(self, step) -> float:
        """Median seconds per call of one step alone: calibrated, then sampled `reps` times."""
        iters, per_call = self.calibrate(step)
        samples, errors = self.interleave({"step": (step, iters, per_call)})
        if errors:
            raise errors["step"]
        return statistics.median(samples["step"])
