"""Benchmark runner: fastgan's fused operators, training steps and data loading, one JSON per run.

    python -m benchmarks.run [--suite ops|train|data|memory|all|LIST] [--device cpu|cuda|auto] [--quick]
                             [--out benchmarks/results] [--time-budget SECONDS] [--table-only]

Built for a GPU machine lent for a few minutes: every suite runs its most important case
first, failures are caught and recorded, a time budget shared between the suites skips
what is left, and the JSON, the results README and the plots are rewritten as the run
goes, so even a killed run leaves artifacts that can be committed.
"""
from __future__ import annotations

import time

# Taken before the imports below: importing the suites imports fastgan.ops, which JIT-builds the
# operator library when no current prebuilt one exists (minutes with CUDA), and that counts against
# --time-budget, or a bench step's timeout would kill a run that believes it has time left.
PROCESS_START = time.monotonic()

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from benchmarks import data_suite, memory_suite, ops_suite, targets, train_suite  # noqa: E402
from benchmarks.cases import BYTE_MODEL_NOTE, BYTE_MODELS, error_reason  # noqa: E402
from benchmarks.machine import (CPU_PEAK_NOTE, cpu_count, fused_kernels_missing, loadavg, machine_info,  # noqa: E402
                                nominal_peak_gbps, slug)
from benchmarks.session import Session  # noqa: E402
from benchmarks.table import DEFAULT_OUT, PLOTTED_SUITES, write_readme  # noqa: E402

SCHEMA = 2
# Run order: the short suites first, so the time they leave unused passes on to the long operator plan.
SUITES = {"train": train_suite, "data": data_suite, "memory": memory_suite, "ops": ops_suite}
SUITE_CHOICES = ("ops", "train", "data", "memory", "all")


def suite_list(text: str) -> tuple[str, ...]:
    """--suite's value: one of SUITE_CHOICES or a comma list of suites, in the run order."""
    names = [name.strip() for name in text.split(",")]
    if names == ["all"]:
        return tuple(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {unknown[0]!r} (choose from {', '.join(map(repr, SUITE_CHOICES))}, "
            f"or a comma list of suites such as 'train,ops')")
    return tuple(name for name in SUITES if name in names)


def results_path(out: Path, machine: dict, started: dt.datetime) -> Path:
    """<device>-<name>[-<n>cpu]-<YYYYMMDD-HHMM>[-k].json, never overwriting an earlier run."""
    name = f"{machine['device']}-{slug(machine['device_name'])}"
    if machine["device"] == "cpu":
        name += f"-{machine['cpu_count']}cpu"
    path = out / f"{name}-{started:%Y%m%d-%H%M}.json"
    suffix = 2
    while path.exists():
        path = out / f"{name}-{started:%Y%m%d-%H%M}-{suffix}.json"
        suffix += 1
    return path


def _parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=suite_list, default="all", metavar="{ops,train,data,memory,all}[,...]",
                        help="ops: fused operators; train: training img/s and peak memory; data: loader img/s; "
                             "memory: the pix2pix D's memory in the in-place vs standard mode; a comma list runs "
                             "several, e.g. train,ops (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto: cuda when available, else cpu (default)")
    parser.add_argument("--quick", action="store_true",
                        help="a small plan that still covers every kind of row; on CPU, reduced training shapes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    parser.add_argument("--time-budget", type=float, default=480.0,
                        help="seconds for the whole run, shared by the suites; each suite always runs its first "
                             "case, later cases not started in its share are recorded as skipped "
                             "(default: %(default)s)")
    parser.add_argument("--table-only", action="store_true",
                        help="only regenerate the results README and plots from the JSON files in --out")
    return parser.parse_args(argv)


def _replot_folder(out: Path) -> None:
    try:
        from benchmarks import plots  # matplotlib: needed for the pictures only, never for the numbers
    except ImportError as exc:
        print(f"plots not drawn: {error_reason(exc)}", file=sys.stderr)
        return
    for json_path in sorted(out.glob("*.json")):
        try:
            for path in plots.write_plots(json_path):
                print(path)
        except Exception as exc:
            print(f"{json_path}: no plots: {error_reason(exc)}", file=sys.stderr)


def _plot(session: Session, suite: str) -> None:
    """A failed plot (matplotlib missing, say) is recorded, never fatal: the numbers are in the JSON already."""
    try:
        from benchmarks import plots

        path = plots.write_plot(session.path, session.result, suite)
        session.result["plots"][suite] = path.name if path else None
    except Exception as exc:
        session.result["plots"][suite] = f"failed: {error_reason(exc)}"
        session.log(f"{suite}: plot failed: {error_reason(exc)}")


def _run_suite(session: Session, name: str, device: str, quick: bool, deadline: float) -> bool:
    state = session.result["suites"][name]
    began = session.elapsed()
    session.log(f"{name}: starting, may start cases until {deadline:.0f} s")
    try:
        SUITES[name].run(session, device, quick, deadline)
        state["status"] = "complete"
    except Exception as exc:
        traceback.print_exc()
        state["status"] = f"error: {error_reason(exc)}"
        session.log(f"{name}: suite failed: {error_reason(exc)}")
    state["elapsed_s"] = round(session.elapsed() - began, 1)
    if name in PLOTTED_SUITES:
        _plot(session, name)
    session.save()
    return state["status"] == "complete"


def main(argv: list[str] | None = None, start: float | None = None) -> int:
    """`start`: the monotonic time the budget counts from (PROCESS_START as a script); now if None."""
    start = time.monotonic() if start is None else start
    args = _parse(argv)
    if args.table_only:
        _replot_folder(args.out)
        print(write_readme(args.out))
        return 0
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    suites = args.suite
    torch.set_num_threads(cpu_count())
    machine = machine_info(device)
    started = dt.datetime.now(dt.timezone.utc)
    args.out.mkdir(parents=True, exist_ok=True)
    path = results_path(args.out, machine, started)
    peak = nominal_peak_gbps(machine["device_name"]) if device == "cuda" else None
    result = {"schema": SCHEMA, "started": started.strftime("%Y-%m-%d %H:%M UTC"), "finished": None,
              "complete": False,
              "args": {"device": device, "mode": "quick" if args.quick else "full", "time_budget": args.time_budget,
                       "suites": list(suites),
                       "command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None
                                                                                  else argv)])},
              "machine": machine, "byte_models": {**BYTE_MODELS, "note": BYTE_MODEL_NOTE},
              "copy_bandwidth_gbps": None, "peak_bandwidth_gbps": peak,
              "peak_bandwidth_note": CPU_PEAK_NOTE if device == "cpu" else None,
              "suites": {name: {"status": "not started", "elapsed_s": None, "share_s": None} for name in suites},
              "rows": [], "plots": {}, "checks": None}
    session = Session(path, result, start)
    result["startup_s"] = round(session.elapsed(), 1)
    session.log(f"{machine['device_name']} | torch {machine['torch']} | threads {machine['threads']} | "
                f"fastgan {machine['fastgan']} -> {path}")
    session.log(f"start-up (imports, a JIT build of fastgan if any) took {result['startup_s']:g} s "
                f"of the {args.time_budget:g} s budget")
    if missing := fused_kernels_missing(machine):
        session.log(f"warning: {missing}; the fused rows and the fastgan configuration time that, not the kernels")
    load = machine["loadavg_start"]
    if load is not None and load > 0.5 * machine["cpu_count"]:
        session.log(f"warning: load average {load} on {machine['cpu_count']} CPUs; other work will distort "
                    f"the timings (CPU ones most)")
    all_ok = True
    for index, name in enumerate(suites):
        share = max(0.0, args.time_budget - session.elapsed()) / (len(suites) - index)
        result["suites"][name]["share_s"] = round(share, 1)
        all_ok &= _run_suite(session, name, device, args.quick, session.elapsed() + share)
    result["checks"] = targets.evaluate(result)
    result["complete"] = True
    result["loadavg_end"] = loadavg()
    result["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    session.save()
    if result["checks"]:
        print("\nTargets (reported, not asserted):", flush=True)
    for verdict in result["checks"]:
        print("  " + targets.describe(verdict), flush=True)
    print(f"\nwrote {path}, {path.parent / 'README.md'} and the plots in {session.elapsed():.0f} s", flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main(start=PROCESS_START))
