"""The operator suite: fused BN+LeakyReLU and GAN losses vs eager PyTorch vs torch.compile.

Rows run in order of importance, every row's failure is caught and recorded, and rows not
started before the suite's deadline are recorded as skipped.
"""
from __future__ import annotations

import math
import statistics
import time

import torch

from benchmarks.cases import (DESIGN_SHAPES, IMPLS, LARGE_SHAPES, PIX2PIX_SHAPES, BnCase, error_reason, loss_cases,
                              make_step)
from benchmarks.session import Session

NAME = "ops"


def plan(device: str, quick: bool) -> list[tuple[object, str]]:
    """(case, pass) pairs, most important first, so a spent time budget cuts the least useful."""
    if device == "cpu":
        design = [BnCase(s) for s in DESIGN_SHAPES]
        extra = [BnCase((16, 64, 64, 64), "bf16"), BnCase((16, 64, 64, 64), layout="NHWC")]
        if quick:
            bn = [(BnCase((4, 128, 64, 64)), "fwd_bwd"), (BnCase((4, 128, 64, 64)), "fwd"),
                  (BnCase((4, 128, 64, 64), "bf16", "NHWC"), "fwd_bwd")]
            return bn + [(c, "fwd_bwd") for c in loss_cases(ns=(16,), sizes=(30,))]
        return ([(c, "fwd_bwd") for c in design + extra] + [(c, "fwd") for c in design + extra]
                + [(c, "fwd_bwd") for c in loss_cases(ns=(16, 64))])
    if quick:
        bn = [(BnCase(s, d), "fwd_bwd") for s, d in (((16, 64, 128, 128), "fp32"), ((16, 256, 32, 32), "fp32"),
                                                       ((16, 64, 256, 256), "fp32"), ((16, 64, 256, 256), "bf16"))]
        bn += [(BnCase((16, 64, 128, 128), layout="NHWC"), "fwd_bwd"), (BnCase((16, 64, 256, 256)), "fwd")]
        return bn + [(c, "fwd_bwd") for c in loss_cases(ns=(16,), sizes=(30, 62))]
    batched = [s for s in PIX2PIX_SHAPES if s[0] >= 16] + list(LARGE_SHAPES)
    single = [s for s in PIX2PIX_SHAPES if s[0] < 16]
    every = batched + single
    pairs = [(BnCase(s), "fwd_bwd") for s in batched]
    pairs += [(c, "fwd_bwd") for c in loss_cases()]
    pairs += [(BnCase(s, "bf16"), "fwd_bwd") for s in batched]
    channels_last_first = [(16, 128, 64, 64), LARGE_SHAPES[0]]
    pairs += [(BnCase(s, d, "NHWC"), "fwd_bwd") for d in ("fp32", "bf16") for s in channels_last_first]
    pairs += [(BnCase(s, d), "fwd_bwd") for d in ("fp32", "bf16") for s in single]
    pairs += [(BnCase(s, d), "fwd") for d in ("fp32", "bf16") for s in every]
    pairs += [(BnCase(s, d, "NHWC"), p) for p in ("fwd_bwd", "fwd") for d in ("fp32", "bf16") for s in every
              if (BnCase(s, d, "NHWC"), p) not in pairs]
    return pairs


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

    def _sample(self, step, iters: int) -> float:
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

    def measure(self, step) -> tuple[float, list[float], int]:
        """Calibrates the batch on a growing number of calls (one call is too noisy to
        size it), then samples until `reps` samples or a deadline of 4x the planned
        time, so a noisy machine stretches a row by a bounded amount, never more."""
        for _ in range(self.warmup):
            step()
        iters = 1
        per_call = self._sample(step, iters)
        while per_call * iters < self.sample_s / 4 and iters < self.MAX_ITERS:
            iters = min(self.MAX_ITERS, iters * 4)
            per_call = self._sample(step, iters)
        iters = max(1, min(self.MAX_ITERS, math.ceil(self.sample_s / max(per_call, 1e-9))))
        deadline = time.monotonic() + 4 * self.reps * max(self.sample_s, per_call)
        samples = []
        while len(samples) < self.reps and (len(samples) < 3 or time.monotonic() < deadline):
            samples.append(self._sample(step, iters))
        return statistics.median(samples), samples, iters


def copy_bandwidth_gbps(timer: Timer) -> float:
    """Device-to-device copy of 512 MiB, far beyond L2: the practical bandwidth ceiling."""
    src = torch.empty(128 * 2**20, dtype=torch.float32, device="cuda").normal_()
    dst = torch.empty_like(src)
    median, _, _ = timer.measure(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / median / 1e9


class OpsRunner:
    """Runs the plan's cases, one row per implementation, into result["rows"]."""

    def __init__(self, session: Session, device: str, timer: Timer, deadline: float):
        self.session, self.device, self.timer, self.deadline = session, device, timer, deadline
        self.result = session.result
        self.last_compile_s = 0.0

    def _row(self, case, pass_: str, impl: str, status: str = "ok", note: str | None = None) -> dict:
        return {"op": case.op, **case.as_dict(), "label": case.label, "pass": pass_, "impl": impl,
                "status": status, "note": note, "bytes": case.nbytes(pass_), "median_ms": None, "gbps": None,
                "x_eager": None, "x_compiled": None}

    def skip_rest(self, pairs) -> None:
        note = self.session.skip_note(self.deadline)
        for case, pass_ in pairs:
            self.result["rows"] += [self._row(case, pass_, impl, "skipped", note) for impl in IMPLS]
        self.session.log(f"ops: time budget spent: skipped the remaining {len(pairs)} cases ({3 * len(pairs)} rows)")

    def _measure(self, row: dict, case, pass_: str, impl: str) -> None:
        step = make_step(impl, case, pass_, self.device)
        if impl == "compiled":
            began = time.monotonic()
            try:
                step()
                if self.device == "cuda":
                    torch.cuda.synchronize()
            except Exception as exc:
                row.update(status="compile failed", note=f"compile failed: {error_reason(exc)}")
                return
            self.last_compile_s = time.monotonic() - began
        median, samples, iters = self.timer.measure(step)
        row.update(median_ms=median * 1e3, min_ms=min(samples) * 1e3, samples_ms=[s * 1e3 for s in samples],
                   iters=iters, gbps=row["bytes"] / median / 1e9)
        copy, peak = self.result.get("copy_bandwidth_gbps"), self.result.get("peak_bandwidth_gbps")
        if copy:
            row["pct_copy"] = 100 * row["gbps"] / copy
        if peak:
            row["pct_peak"] = 100 * row["gbps"] / peak

    def run_row(self, case, pass_: str, impl: str, first_case: bool) -> dict:
        row = self._row(case, pass_, impl)
        left = self.deadline - self.session.elapsed()
        if impl == "compiled" and not first_case and left < self.last_compile_s:
            row.update(status="skipped", note=f"skipped: {max(left, 0):.0f} s of budget left, the last compile "
                                              f"took {self.last_compile_s:.0f} s")
            return row
        try:
            self._measure(row, case, pass_, impl)
        except Exception as exc:
            row.update(status="error", note=error_reason(exc))
            if self.device == "cuda":
                torch.cuda.empty_cache()
        return row

    def run_case(self, case, pass_: str, first_case: bool) -> None:
        rows = {}
        for impl in IMPLS:
            row = rows[impl] = self.run_row(case, pass_, impl, first_case)
            _fill_ratios(rows)
            self.session.log(_progress(row))
        self.result["rows"] += rows.values()
        self.session.save()


def _fill_ratios(rows: dict) -> None:
    """Speedups of each row over eager and over compiled (their time / this time)."""
    times = {impl: r["median_ms"] for impl, r in rows.items() if r["status"] == "ok"}
    for impl, row in rows.items():
        if impl in times:
            row["x_eager"] = times["eager"] / times[impl] if "eager" in times else None
            row["x_compiled"] = times["compiled"] / times[impl] if "compiled" in times else None


def _progress(row: dict) -> str:
    head = f"{row['op']:<6} {row['label']:<26} {row['pass']:<7} {row['impl']:<8}"
    if row["status"] != "ok":
        return f"{head} {row['note']}"
    text = f"{head} {row['median_ms']:9.4f} ms {row['gbps']:8.1f} GB/s"
    for key, name in (("x_eager", "eager"), ("x_compiled", "compiled")):
        if row[key] is not None and row["impl"] != name:
            text += f"  {row[key]:.2f}x vs {name}"
    if row.get("pct_peak") is not None:
        text += f"  {row['pct_peak']:.0f}% of peak"
    return text


def run(session: Session, device: str, quick: bool, deadline: float) -> None:
    result = session.result
    timer = Timer.for_device(device, quick)
    if device == "cuda":
        try:
            result["copy_bandwidth_gbps"] = copy_bandwidth_gbps(timer)
            session.log(f"ops: copy bandwidth {result['copy_bandwidth_gbps']:.0f} GB/s, nominal peak "
                        f"{result['peak_bandwidth_gbps'] or 'unknown'} GB/s")
        except Exception as exc:
            session.log(f"ops: copy bandwidth not measured: {error_reason(exc)}")
    runner = OpsRunner(session, device, timer, deadline)
    pairs = plan(device, quick)
    for index, (case, pass_) in enumerate(pairs):
        if not session.may_start(index, deadline):
            runner.skip_rest(pairs[index:])
            session.save()
            return
        runner.run_case(case, pass_, first_case=index == 0)
