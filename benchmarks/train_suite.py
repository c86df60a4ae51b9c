"""The training suite: trainer steps per second and peak memory, fastgan vs the reference setup.

Both configurations of a case are built side by side and timed in alternating rounds
of equal step counts, bracketed by CUDA synchronisation, so drift in clocks or machine
load hits both alike and the ratio is measured, not assembled from two runs. Peak memory
counts only the configuration's own tensors and leaves out cuDNN's autotuning trials
(see README.md, "Training suite").
"""
from __future__ import annotations

import gc
import statistics
import time

import torch

from benchmarks.cases import error_reason
from benchmarks.session import Session
from fastgan.cuda_graph import WARMUP_STEPS
from benchmarks.training import (CPU_PRECISION_NOTE, FULL_CASES, REFERENCE, TrainCase, TrainConfig, build_step,
                                 fastgan_config)

NAME = "train"
CPU_MEMORY_NOTE = ("n/a (CPU): torch has no per-configuration peak counter on CPU, and process RSS would mix both "
                   "configurations and the allocator's cache")
CUDA_MEMORY_NOTE = ("MiB: growth of torch.cuda.memory_allocated while the configuration is built and warmed up "
                    "(weights, gradients, Adam state, batch) + the peak of torch.cuda.max_memory_allocated above the "
                    "allocation level during one steady-state step")
# Reduced stand-ins for a 2-core CPU (--quick): same architectures, smaller images, batches and widths.
QUICK_CPU_CASES = (TrainCase("pix2pix", 64, 1, width=32, stands_for="pix2pix 256x256 batch 1"),
                   TrainCase("pix2pix", 64, 4, width=32, stands_for="pix2pix 256x256 batch 16"),
                   TrainCase("dcgan", 32, 32, width=32, stands_for="dcgan 64x64 batch 128"))


def plan(device: str, quick: bool) -> tuple[TrainCase, ...]:
    """The issue's shapes, except --quick on CPU, where they would take minutes per step."""
    return QUICK_CPU_CASES if device == "cpu" and quick else FULL_CASES


def schedule(device: str, quick: bool) -> dict:
    """Warm-up steps per configuration, alternating rounds, and the time one round of one configuration aims at."""
    if device == "cuda":
        # The warm-up covers the CUDA-graph capture (after WARMUP_STEPS eager steps) too.
        return {"warmup": WARMUP_STEPS + 2, "rounds": 6 if quick else 10, "round_s": 0.1 if quick else 0.25}
    return {"warmup": 2 if quick else 1, "rounds": 7 if quick else 5, "round_s": 0.3 if quick else 1.0}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _allocated(device: str) -> int:
    return torch.cuda.memory_allocated() if device == "cuda" else 0


def _timed(step, count: int, device: str) -> float:
    """Seconds per step over `count` steps, synchronised at both ends."""
    _sync(device)
    begin = time.perf_counter()
    for _ in range(count):
        step()
    _sync(device)
    return (time.perf_counter() - begin) / count


def empty_row(case: TrainCase, config: TrainConfig, status: str = "ok", note: str | None = None) -> dict:
    return {**case.as_dict(), "config": config.name, "precision": config.precision,
            "memory_format": "channels_last" if config.channels_last else "NCHW", "status": status, "note": note,
            "median_step_ms": None, "min_step_ms": None, "img_per_s": None, "samples_ms": None,
            "steps_per_round": None, "peak_memory_mib": None, "x_reference": None}


class CaseMeasurement:
    """Builds both configurations of one case, then measures memory and interleaved throughput."""

    def __init__(self, case: TrainCase, device: str, quick: bool):
        self.case, self.device, self.sched = case, device, schedule(device, quick)
        self.configs = {c.name: c for c in (REFERENCE, fastgan_config(device))}
        self.rows = {name: empty_row(case, config) for name, config in self.configs.items()}
        self.steps, self.step_s, self.kept_bytes = {}, {}, {}

    def _fail(self, names, exc: BaseException, when: str) -> None:
        for name in names:
            self.rows[name].update(status="error", note=f"{when}: {error_reason(exc)}")
            self.steps.pop(name, None)
        if self.device == "cuda":
            gc.collect()
            torch.cuda.empty_cache()

    def build(self) -> None:
        for name, config in self.configs.items():
            before = _allocated(self.device)
            try:
                step = build_step(self.case, config, self.device)
                for _ in range(self.sched["warmup"] - 1):
                    step()
                self.step_s[name] = _timed(step, 1, self.device)
            except Exception as exc:
                self._fail([name], exc, "build/warm-up")
                continue
            self.steps[name] = step
            self.kept_bytes[name] = _allocated(self.device) - before

    def measure_memory(self) -> None:
        if self.device != "cuda":
            return
        for name, step in list(self.steps.items()):
            try:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                step()
                torch.cuda.synchronize()
                transient = torch.cuda.max_memory_allocated() - before
            except Exception as exc:
                self._fail([name], exc, "memory step")
                continue
            self.rows[name]["peak_memory_mib"] = (self.kept_bytes[name] + transient) / 2**20

    def measure_throughput(self) -> None:
        if not self.steps:
            return
        names = list(self.steps)
        slowest = max(self.step_s[name] for name in names)
        per_round = max(1, round(self.sched["round_s"] / max(slowest, 1e-9)))
        samples = {name: [] for name in names}
        try:
            for index in range(self.sched["rounds"]):
                for name in (names if index % 2 == 0 else names[::-1]):
                    samples[name].append(_timed(self.steps[name], per_round, self.device))
        except Exception as exc:
            self._fail(names, exc, "timed steps")
            return
        for name in names:
            median = statistics.median(samples[name])
            self.rows[name].update(median_step_ms=median * 1e3, min_step_ms=min(samples[name]) * 1e3,
                                   img_per_s=self.case.batch / median, samples_ms=[s * 1e3 for s in samples[name]],
                                   steps_per_round=per_round)
        reference = self.rows["reference"]["img_per_s"]
        for row in self.rows.values():
            if row["img_per_s"] is not None and reference:
                row["x_reference"] = row["img_per_s"] / reference

    def run(self) -> list[dict]:
        self.build()
        self.measure_memory()
        self.measure_throughput()
        self.steps.clear()
        if self.device == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        return list(self.rows.values())


def _progress(row: dict) -> str:
    head = f"train: {row['label']:<30} {row['config']:<9}"
    if row["status"] != "ok":
        return f"{head} {row['note']}"
    text = f"{head} {row['median_step_ms']:9.2f} ms/step {row['img_per_s']:9.1f} img/s"
    if row["peak_memory_mib"] is not None:
        text += f" {row['peak_memory_mib']:9.0f} MiB"
    if row["config"] != "reference" and row["x_reference"] is not None:
        text += f"  {row['x_reference']:.2f}x vs reference"
    return text


def run(session: Session, device: str, quick: bool, deadline: float) -> None:
    cases = plan(device, quick)
    configs = (REFERENCE, fastgan_config(device))
    section = session.result["train"] = {
        "configs": {c.name: c.describe() for c in configs},
        "precision_note": CPU_PRECISION_NOTE if device == "cpu" else None,
        "shapes": "reduced stand-ins (CPU --quick)" if cases is QUICK_CPU_CASES else "the issue's shapes",
        "memory": CPU_MEMORY_NOTE if device == "cpu" else CUDA_MEMORY_NOTE,
        "schedule": schedule(device, quick),
        "rows": []}
    if device == "cpu":
        session.log(f"train: {CPU_PRECISION_NOTE}")
    if cases is QUICK_CPU_CASES:
        session.log("train: --quick on CPU runs reduced stand-ins: "
                    + "; ".join(f"{c.label} for {c.stands_for}" for c in cases))
    benchmark_mode = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as the trainer sets it; both configurations autotune in warm-up
    if device == "cuda":
        section["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    try:
        for index, case in enumerate(cases):
            if not session.may_start(index, deadline):
                note = session.skip_note(deadline)
                for rest in cases[index:]:
                    section["rows"] += [empty_row(rest, config, "skipped", note) for config in configs]
                session.log(f"train: time budget spent: skipped the remaining {len(cases) - index} cases")
                break
            rows = CaseMeasurement(case, device, quick).run()
            for row in rows:
                session.log(_progress(row))
            section["rows"] += rows
            session.save()
    finally:
        torch.backends.cudnn.benchmark = benchmark_mode
