"""Benchmark runner: fused fastgan operators vs eager PyTorch vs torch.compile.

    python -m benchmarks.run [--device cpu|cuda|auto] [--quick] [--out benchmarks/results]
                             [--time-budget SECONDS] [--table-only]

Built for a GPU machine lent for a few minutes: rows run in order of importance, every
row's failure is caught and recorded, the time budget skips what is left, and the JSON
and the results README are rewritten after every case, so even a killed run leaves
artifacts that can be committed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import targets
from benchmarks.cases import (BYTE_MODEL_NOTE, BYTE_MODELS, DESIGN_SHAPES, IMPLS, LARGE_SHAPES,
                              PIX2PIX_SHAPES, BnCase, error_reason, loss_cases, make_step)
from benchmarks.table import DEFAULT_OUT, write_readme

REPO = Path(__file__).resolve().parent.parent
# Nominal HBM bandwidth in GB/s, first match on torch.cuda.get_device_name() wins.
NOMINAL_PEAK_GBPS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100 NVL", 3900.0), ("H100", 3350.0))


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


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _loadavg() -> float | None:
    """The 1-minute load average: other work on the machine makes CPU numbers noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _git() -> dict:
    def git(*args):
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None
    try:
        status = git("status", "--porcelain")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "error": error_reason(exc)}


def _fastgan_info() -> dict:
    try:
        import fastgan.ops

        return dict(fastgan.ops.backend_info())
    except Exception as exc:  # the fused rows will fail on their own; the run goes on
        return {"error": error_reason(exc)}


def machine_info(device: str) -> dict:
    info = {"device": device, "cpu_model": _cpu_model(), "cpu_count": _cpu_count(), "loadavg_start": _loadavg(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "platform": platform.platform(),
            "fastgan": _fastgan_info(), "git": _git(),
            # glibc's allocator settings decide whether big CPU tensors are faulted in afresh every step.
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
    else:
        info["device_name"] = info["cpu_model"]
    return info


def nominal_peak_gbps(name: str) -> float | None:
    return next((gbps for key, gbps in NOMINAL_PEAK_GBPS if key.lower() in name.lower()), None)


def copy_bandwidth_gbps(timer: Timer) -> float:
    """Device-to-device copy of 512 MiB, far beyond L2: the practical bandwidth ceiling."""
    src = torch.empty(128 * 2**20, dtype=torch.float32, device="cuda").normal_()
    dst = torch.empty_like(src)
    median, _, _ = timer.measure(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / median / 1e9


class Runner:
    """Runs the plan's cases, one row per implementation, and keeps the JSON current."""

    def __init__(self, device: str, budget_s: float, result: dict, path: Path, timer: Timer, start: float):
        self.device, self.budget_s, self.result, self.path, self.timer = device, budget_s, result, path, timer
        self.start = start
        self.last_compile_s = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.result, indent=1))
        tmp.replace(self.path)
        write_readme(self.path.parent)

    def log(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", flush=True)

    def _row(self, case, pass_: str, impl: str, status: str = "ok", note: str | None = None) -> dict:
        return {"op": case.op, **case.as_dict(), "label": case.label, "pass": pass_, "impl": impl,
                "status": status, "note": note, "bytes": case.nbytes(pass_), "median_ms": None, "gbps": None,
                "x_eager": None, "x_compiled": None}

    def skip_rest(self, pairs) -> None:
        note = f"skipped: time budget of {self.budget_s:.0f} s spent"
        for case, pass_ in pairs:
            self.result["rows"] += [self._row(case, pass_, impl, "skipped", note) for impl in IMPLS]
        self.log(f"time budget spent: skipped the remaining {len(pairs)} cases ({3 * len(pairs)} rows)")

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

    def run_row(self, case, pass_: str, impl: str) -> dict:
        row = self._row(case, pass_, impl)
        left = self.budget_s - self.elapsed()
        if impl == "compiled" and left < self.last_compile_s:
            row.update(status="skipped", note=f"skipped: {left:.0f} s of budget left, the last compile took "
                                              f"{self.last_compile_s:.0f} s")
            return row
        try:
            self._measure(row, case, pass_, impl)
        except Exception as exc:
            row.update(status="error", note=error_reason(exc))
            if self.device == "cuda":
                torch.cuda.empty_cache()
        return row

    def run_case(self, case, pass_: str) -> None:
        rows = {}
        for impl in IMPLS:
            row = rows[impl] = self.run_row(case, pass_, impl)
            _fill_ratios(rows)
            self.log(_progress(row))
        self.result["rows"] += rows.values()
        self.save()


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


def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto: cuda when available, else cpu (default)")
    parser.add_argument("--quick", action="store_true", help="a small plan that still covers every kind of row")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    parser.add_argument("--time-budget", type=float, default=480.0,
                        help="seconds; rows not started by then are recorded as skipped (default: %(default)s)")
    parser.add_argument("--table-only", action="store_true",
                        help="only regenerate the results README from the JSON files in --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    start = time.monotonic()  # the budget includes start-up, e.g. a JIT build of fastgan
    args = _parse(argv)
    if args.table_only:
        print(write_readme(args.out))
        return 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(_cpu_count())
    machine = machine_info(device)
    started = dt.datetime.now(dt.timezone.utc)
    slug = f"{device}-{_slug(machine['device_name'])}" + (f"-{machine['cpu_count']}cpu" if device == "cpu" else "")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{slug}-{started:%Y%m%d-%H%M}.json"
    suffix = 2
    while path.exists():
        path = args.out / f"{slug}-{started:%Y%m%d-%H%M}-{suffix}.json"
        suffix += 1
    result = {"schema": 1, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "finished": None, "complete": False,
              "args": {"device": device, "mode": "quick" if args.quick else "full", "time_budget": args.time_budget},
              "machine": machine, "byte_models": {**BYTE_MODELS, "note": BYTE_MODEL_NOTE},
              "copy_bandwidth_gbps": None, "peak_bandwidth_gbps": None, "rows": [], "checks": None}
    timer = (Timer("cuda", sample_s=0.01, reps=7 if args.quick else 15, warmup=5) if device == "cuda"
             else Timer("cpu", sample_s=0.05, reps=5 if args.quick else 7, warmup=2))
    runner = Runner(device, args.time_budget, result, path, timer, start)
    runner.log(f"{machine['device_name']} | torch {machine['torch']} | threads {machine['threads']} | "
               f"fastgan {machine['fastgan']} -> {path}")
    load = machine["loadavg_start"]
    if load is not None and load > 0.5 * machine["cpu_count"]:
        runner.log(f"warning: load average {load} on {machine['cpu_count']} CPUs; other work will distort "
                   f"the timings (CPU ones most)")
    if device == "cuda":
        result["peak_bandwidth_gbps"] = nominal_peak_gbps(machine["device_name"])
        try:
            result["copy_bandwidth_gbps"] = copy_bandwidth_gbps(timer)
            runner.log(f"copy bandwidth {result['copy_bandwidth_gbps']:.0f} GB/s, nominal peak "
                       f"{result['peak_bandwidth_gbps'] or 'unknown'} GB/s")
        except Exception as exc:
            runner.log(f"copy bandwidth not measured: {error_reason(exc)}")
    pairs = plan(device, args.quick)
    for index, (case, pass_) in enumerate(pairs):
        if runner.elapsed() >= args.time_budget:
            runner.skip_rest(pairs[index:])
            break
        runner.run_case(case, pass_)
    result["checks"] = targets.evaluate(result)
    result["complete"] = True
    result["loadavg_end"] = _loadavg()
    result["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runner.save()
    print("\nTargets (reported, not asserted):", flush=True)
    for verdict in result["checks"]:
        print("  " + targets.describe(verdict), flush=True)
    print(f"\nwrote {path} and {path.parent / 'README.md'} in {runner.elapsed():.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
