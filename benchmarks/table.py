"""Regenerates results/README.md from every results JSON in the folder.

    python -m benchmarks.table [--out benchmarks/results]

The Markdown is derived, never edited: committed JSON files are the record, so a table
can always be rebuilt (or restyled) without the machine that produced the numbers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import targets
from benchmarks.cases import BYTE_MODEL_NOTE, BYTE_MODELS, IMPLS, PEER_IMPLS, PEER_NOTE
from benchmarks.machine import CPU_PEAK_NOTE

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
PLOTTED_SUITES = ("ops", "train", "data")  # the memory suite's few rows read better as a table
_CELL = {"compile failed": "compile failed", "error": "error", "skipped": "skipped"}


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}" if value >= 0.1 else f"{value:.4f}"


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _load(folder: Path) -> list[tuple[Path, dict | None, str | None]]:
    loaded = []
    for path in sorted(folder.glob("*.json")):
        try:
            loaded.append((path, json.loads(path.read_text()), None))
        except (OSError, ValueError) as exc:
            loaded.append((path, None, f"{type(exc).__name__}: {exc}"))
    return loaded


def _machine_note(path: Path, result: dict) -> str:
    m = result["machine"]
    where = m["device_name"]
    if m["device"] == "cuda":
        where += f" (CUDA {m.get('cuda')}, {m.get('gpu_memory_gib')} GiB), host CPU {m.get('cpu_model')}"
    where += f", {m['cpu_count']} CPUs, {m['threads']} torch threads"
    if m.get("loadavg_start") is not None:
        where += f", load average {m['loadavg_start']} at start and {result.get('loadavg_end', '?')} at end"
    malloc = m.get("malloc_env") or {}
    where += ("; glibc malloc " + ", ".join(f"{k}={v}" for k, v in sorted(malloc.items()))
              if malloc else "; default glibc malloc settings") if m["device"] == "cpu" else ""
    fg = m.get("fastgan", {})
    backend = (f"backend `{fg.get('backend')}` (cuda: {fg.get('cuda')}"
               + (f"; {fg['reason']}" if fg.get("reason") else "") + ")") if "backend" in fg \
        else f"not importable ({fg.get('error')})"
    if m.get("fastgan_version"):
        backend = f"{m['fastgan_version']}, {backend}"
    if m["device"] == "cuda" and m.get("driver"):
        where += f", driver {m['driver']}"
    dali = f"; DALI {m['dali'] or 'not installed'}" if "dali" in m else ""
    git = m.get("git") or {}
    commit = (git.get("commit") or "none")[:12] + (" + uncommitted changes" if git.get("dirty") else "")
    state = "complete" if result.get("complete") else "**partial** (stopped before the end; rows missing)"
    return (f"`{path.name}`, produced on {where}; torch {m['torch']}, Python {m['python']}{dali}; "
            f"fastgan {backend}; commit {commit}; run {state}, "
            f"{result['args'].get('mode', 'full')} plan, time budget {result['args']['time_budget']:g} s"
            f"{_suites_note(result)}.")


def _suites_note(result: dict) -> str:
    """Which suites ran, how long each took of the share of the budget it was given."""
    suites = result.get("suites")
    if not suites:
        return ""
    parts = [f"{name} {state['status']}" + (f" in {state['elapsed_s']:g} s of a {state['share_s']:g} s share"
                                            if state.get("elapsed_s") is not None else "")
             for name, state in suites.items()]
    return "; suites: " + ", ".join(parts)


def _by_case(rows: list[dict], op: str) -> list[tuple[tuple, dict]]:
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row["op"] == op:
            key = (row.get("mode"), row["layout"], row["dtype"], row["pass"], tuple(row["shape"]))
            groups.setdefault(key, {})[row["impl"]] = row
    return sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1], kv[0][2] != "fp32", kv[0][3:]))


def _impl_cell(row: dict | None) -> str:
    if row is None:
        return "–"
    if row["status"] == "ok":
        return _ms(row["median_ms"])
    return _CELL.get(row["status"], row["status"])


def _table(result: dict, op: str) -> list[str]:
    groups = _by_case(result["rows"], op)
    if not groups:
        return []
    gpu = result["machine"]["device"] == "cuda"
    peak = result.get("peak_bandwidth_gbps")
    if op == "bn_act":
        lines = ["### BatchNorm2d + LeakyReLU(0.2), training mode", "",
                 f"Bytes: {BYTE_MODELS['bn_act']}. {BYTE_MODEL_NOTE}", ""]
        head = ["shape", "dtype", "layout", "pass"]
        gbps = "fused GB/s (3\\|x\\| fwd, 8\\|x\\| fwd+bwd)"
    else:
        lines = ["### Discriminator loss, fwd+bwd (fp32 logits)", "",
                 f"Bytes: {BYTE_MODELS['d_loss']}. {BYTE_MODEL_NOTE}", ""]
        head = ["mode", "logits"]
        gbps = "fused GB/s (2(\\|real\\|+\\|fake\\|))"
    peers = [impl for impl in PEER_IMPLS if any(impl in impls for _, impls in groups)]
    head += [f"{impl} ms" for impl in IMPLS + tuple(peers)]
    head += [gbps, "fused vs eager", "fused vs compiled", "compiled vs eager"] + [f"fused vs {p}" for p in peers]
    if gpu:
        head += ["fused % of copy"] + (["fused % of peak"] if peak else [])
    if peers:
        lines += [f"Peers: {PEER_NOTE}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (mode, layout, dtype, pass_, shape), impls in groups:
        fused, compiled = impls.get("fused"), impls.get("compiled")
        ok = fused if fused and fused["status"] == "ok" else None
        comp_ok = compiled if compiled and compiled["status"] == "ok" else None
        shape_text = "x".join(map(str, shape))
        cells = [shape_text, dtype, layout, pass_.replace("_", "+")] if op == "bn_act" else [mode, shape_text]
        cells += [_impl_cell(impls.get(impl)) for impl in IMPLS + tuple(peers)]
        cells += [_num(ok and ok["gbps"], ".1f"), _num(ok and ok["x_eager"], ".2f"),
                  _num(ok and ok["x_compiled"], ".2f"), _num(comp_ok and comp_ok["x_eager"], ".2f")]
        cells += [_num(ok and ok.get(f"x_{peer}"), ".2f") for peer in peers]
        if gpu:
            cells.append(_num(ok and ok.get("pct_copy"), ".0f"))
            if peak:
                cells.append(_num(ok and ok.get("pct_peak"), ".0f"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _train_table(result: dict) -> list[str]:
    section = result.get("train") or {}
    rows = section.get("rows") or []
    if not rows:
        return []
    lines = ["### Training steps (one D step + one G step), fastgan vs the reference-equivalent configuration", ""]
    for name, description in (section.get("configs") or {}).items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in description.items()))
    if section.get("precision_note"):
        lines.append(f"- {section['precision_note']}")
    lines.append(f"- Shapes: {section.get('shapes')}; peak memory: {section.get('memory')}")
    lines += ["", "| case | stands for | reference img/s | fastgan img/s | fastgan vs reference | reference ms/step "
                  "| fastgan ms/step | reference peak MiB | fastgan peak MiB |", "|" + "---|" * 9]
    by = {(r["label"], r["config"]): r for r in rows}
    for label in dict.fromkeys(r["label"] for r in rows):
        ref, fast = by.get((label, "reference")), by.get((label, "fastgan"))
        lines.append("| " + " | ".join([
            label, (ref or fast).get("stands_for") or "–", _train_cell(ref, "img_per_s", ".1f"),
            _train_cell(fast, "img_per_s", ".1f"), _train_cell(fast, "x_reference", ".2f"),
            _train_cell(ref, "median_step_ms", ".1f"), _train_cell(fast, "median_step_ms", ".1f"),
            _memory_cell(ref, result), _memory_cell(fast, result)]) + " |")
    return lines + [""]


def _train_cell(row: dict | None, key: str, fmt: str) -> str:
    """A measured value, or why there is none (skipped, error)."""
    if row is None:
        return "–"
    if row["status"] != "ok":
        return _CELL.get(row["status"], row["status"])
    return _num(row.get(key), fmt)


def _memory_cell(row: dict | None, result: dict) -> str:
    if result["machine"]["device"] == "cpu":
        return "n/a (CPU)"
    return _train_cell(row, "peak_memory_mib", ".0f")


def _data_table(result: dict) -> list[str]:
    section = result.get("data") or {}
    rows, wait_rows = section.get("rows") or [], section.get("wait_rows") or []
    if not rows and not wait_rows:
        return []
    lines = ["### Data loading (loader only, images/s)", "",
             "| loader | case | files | img/s | DALI vs torch | status |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['loader']} | {row['label']} | {_num(row.get('files'), 'd')} | "
                     f"{_num(row.get('img_per_s'), '.1f')} | {_num(row.get('x_torch'), '.2f')} | {_status(row)} |")
    if wait_rows:
        lines += ["", "### Data wait in training (share of each step spent waiting for the next batch)", "",
                  "| loader | case | stands for | data wait ms | step ms | wait % of step | img/s | status |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in wait_rows:
            lines.append(f"| {row['loader']} | {row['case']} | {row.get('stands_for') or '–'} | "
                         f"{_num(row.get('median_wait_ms'), '.2f')} | {_num(row.get('median_step_ms'), '.1f')} | "
                         f"{_num(row.get('wait_pct'), '.2f')} | {_num(row.get('img_per_s'), '.1f')} | "
                         f"{_status(row)} |")
    return lines + [""]


def _status(row: dict) -> str:
    return row["status"] if row["status"] == "ok" else f"{row['status']}: {_escape(row.get('note') or '')}"


def _memory_table(result: dict) -> list[str]:
    section = result.get("memory") or {}
    rows = section.get("rows") or []
    if not rows:
        return []
    lines = [f"### Discriminator memory: in-place vs standard mode ({section['model']})", ""]
    lines += [f"- **{name}**: {text}" for name, text in section["variants"].items()]
    lines += [f"- saved for backward: {section['saved']}", f"- peak: {section['peak']}", "",
              "| input | variant | saved for backward MiB | vs standard | peak MiB | vs standard | fwd+bwd ms |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | {row['variant']} | {_CELL.get(row['status'], row['status'])} "
                         f"| – | – | – | – |")
            continue
        lines.append(f"| {row['label']} | {row['variant']} | {_num(row['saved_mib'], '.1f')} | "
                     f"{_num(row['saved_vs_standard'], '.2f')} | {_num(row['peak_mib'], '.1f')} | "
                     f"{_num(row['peak_vs_standard'], '.2f')} | {_num(row['median_ms'], '.2f')} |")
    return lines + [""]


def _plot_links(path: Path) -> list[str]:
    """Images of the plots written beside the JSON (benchmarks.plots names them <stem>-<suite>.png)."""
    names = [f"{path.stem}-{suite}.png" for suite in PLOTTED_SUITES]
    return [f"![{name}]({name})" for name in names if (path.parent / name).exists()]


def _row_notes(result: dict) -> list[str]:
    """Every failure note once, every skip reason counted, across the suites."""
    listed = [(f"{row['label']} {row['pass']} {row['impl']}", row) for row in result.get("rows", [])]
    listed += [(f"{row['label']} {row['config']}", row) for row in (result.get("train") or {}).get("rows", [])]
    data = result.get("data") or {}
    listed += [(row["label"], row) for row in data.get("rows", []) + data.get("wait_rows", [])
               if row["status"] != "not available"]
    listed += [(f"memory {row['label']} {row['variant']}", row) for row in (result.get("memory") or {}).get("rows", [])]
    notes = [f"- {name}: {_escape(row['note'])}" for name, row in listed
             if row.get("note") and row["status"] != "skipped"]
    skipped: dict[str, int] = {}
    for _, row in listed:
        if row["status"] == "skipped":
            skipped[row["note"]] = skipped.get(row["note"], 0) + 1
    return notes + [f"- {count} rows {_escape(note)}" for note, count in skipped.items()]


def _render_result(path: Path, result: dict) -> list[str]:
    m = result["machine"]
    lines = [f"## {m['device_name']} ({m['device']}), {result['started']}", "", _machine_note(path, result), ""]
    if m["device"] == "cuda":
        copy, peak = result.get("copy_bandwidth_gbps"), result.get("peak_bandwidth_gbps")
        text = f"Device-to-device copy (read + write) measured in the same run: {_num(copy, '.0f')} GB/s"
        if peak:
            text += f"; nominal peak {peak:.0f} GB/s" + (f" ({100 * copy / peak:.0f}% reached by the copy)"
                                                          if copy else "")
        lines += [text + ".", ""]
    elif result.get("rows"):
        lines += [f"Roofline: the GB/s columns are achieved bandwidth; peak bandwidth {CPU_PEAK_NOTE}.", ""]
    verdicts = targets.evaluate(result)
    if verdicts:
        lines += ["Targets (reported, not asserted):", ""]
        lines += [f"- {_escape(targets.describe(v))}" for v in verdicts] + [""]
    links = _plot_links(path)
    if links:
        lines += [" ".join(links), ""]
    lines += (_train_table(result) + _data_table(result) + _memory_table(result) + _table(result, "bn_act")
              + _table(result, "d_loss"))
    notes = _row_notes(result)
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    return lines


def render(folder: Path) -> str:
    """The whole README: one section per results file, newest first."""
    lines = ["# Benchmark results", "",
             "Generated by `python -m benchmarks.table` from the JSON files in this folder "
             "(written by `python -m benchmarks.run`); do not edit by hand. Times are medians; "
             "\"vs\" columns are speedups (other time / this time, above 1 is faster). "
             "See ../README.md for what is measured.", ""]
    loaded = _load(folder)
    good = sorted(((p, r) for p, r, e in loaded if r is not None),
                  key=lambda pr: (pr[1].get("started", ""), pr[0].name), reverse=True)
    if not loaded:
        lines += ["No results yet.", ""]
    for path, result in good:
        try:
            lines += _render_result(path, result)
        except (KeyError, TypeError, ValueError) as exc:
            lines += [f"## {path.name}", "", f"Could not render: {type(exc).__name__}: {exc}", ""]
    for path, _, error in loaded:
        if error:
            lines += [f"## {path.name}", "", f"Unreadable: {_escape(error)}", ""]
    return "\n".join(lines)


def write_readme(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "README.md"
    tmp = target.with_suffix(".md.tmp")
    tmp.write_text(render(folder))
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    print(write_readme(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
