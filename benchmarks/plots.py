"""PNG plots of one results JSON, one per suite, written next to it as <stem>-<suite>.png.

    python -m benchmarks.plots [--out benchmarks/results]     # re-plot every JSON in the folder

Derived, like the results README: the JSON is the record, plots can always be redrawn.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on the benchmark machines
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.cases import REFERENCE_IMPLS  # noqa: E402
from benchmarks.table import DEFAULT_OUT, PLOTTED_SUITES  # noqa: E402

COLORS = {"eager": "#9e9e9e", "compiled": "#5c6bc0", "inplace_abn": "#8e24aa", "abn": "#ce93d8",
          "reference": "#9e9e9e", "fastgan": "#e65100", "torch": "#00897b"}


def plot_path(json_path: Path, suite: str) -> Path:
    return json_path.with_name(f"{json_path.stem}-{suite}.png")


def _title(result: dict) -> str:
    m = result["machine"]
    return f"{m['device_name']} ({m['device']}), torch {m['torch']}, {result['started']}"


def _bars(ax, labels: list[str], series: dict[str, list], ylabel: str, colors: dict[str, str]) -> None:
    """Grouped bars, each labelled with its value; None values are left out rather than drawn as 0.
    A log axis when values span more than 30x, so small cases stay visible beside large ones."""
    width = 0.8 / max(1, len(series))
    drawn = [v for values in series.values() for v in values if v]
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(labels))]
        pairs = [(x, v) for x, v in zip(xs, values) if v is not None]
        if pairs:
            bars = ax.bar([x for x, _ in pairs], [v for _, v in pairs], width, label=name, color=colors.get(name))
            ax.bar_label(bars, labels=[f"{v:.3g}" if v < 1000 else f"{v:.0f}" for _, v in pairs], fontsize=6)
    if drawn and max(drawn) > 30 * min(drawn):
        ax.set_yscale("log")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def _ok(row: dict, key: str):
    return row.get(key) if row.get("status") == "ok" else None


def _ops_figure(result: dict):
    """Speed-up of the fused op over eager and over torch.compile, per shape."""
    panels = []
    for op, title in (("bn_act", "BatchNorm2d + LeakyReLU(0.2), training"), ("d_loss", "discriminator loss fwd+bwd")):
        fused = [r for r in result.get("rows", []) if r["op"] == op and r["impl"] == "fused"]
        if fused:
            labels = [r["label"] + ("" if op == "d_loss" else " " + r["pass"].replace("_", "+")) for r in fused]
            series = {f"vs {ref}": [_ok(r, f"x_{ref}") for r in fused] for ref in REFERENCE_IMPLS
                      if any(_ok(r, f"x_{ref}") is not None for r in fused)}
            panels.append((title, labels, series))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.55 * max(len(p[1]) for p in panels) + 2),
                                                       4.2 * len(panels)), squeeze=False)
    for ax, (title, labels, series) in zip(axes[:, 0], panels):
        colors = {f"vs {name}": COLORS[name] for name in REFERENCE_IMPLS}
        _bars(ax, labels, series, "fused speed-up (x)", colors)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=9)
    return fig


def _train_figure(result: dict):
    """img/s and peak memory of each configuration, per case."""
    section = result.get("train") or {}
    rows = section.get("rows") or []
    if not rows:
        return None
    labels = list(dict.fromkeys(r["label"] for r in rows))
    configs = list(dict.fromkeys(r["config"] for r in rows))
    by = {(r["label"], r["config"]): r for r in rows}

    def values(key):
        return {c: [_ok(by[(label, c)], key) if (label, c) in by else None for label in labels] for c in configs}

    fig, (speed, memory) = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(labels) + 4), 4.5))
    _bars(speed, labels, values("img_per_s"), "training img/s (higher is better)", COLORS)
    speed.set_title("throughput", fontsize=9)
    mem = values("peak_memory_mib")
    if any(v is not None for vs in mem.values() for v in vs):
        _bars(memory, labels, mem, "peak memory, MiB (lower is better)", COLORS)
    else:
        memory.axis("off")
        memory.text(0.5, 0.5, (section.get("memory") or "peak memory not measured").split(":")[0],
                    ha="center", va="center", fontsize=12)
    memory.set_title("peak memory", fontsize=9)
    return fig


def _data_figure(result: dict):
    """Loader img/s per case, the torch DataLoader beside DALI, and each loader's data-wait share of a
    training step; loaders not available or not run leave their bar out."""
    section = result.get("data") or {}
    rows, wait_rows = section.get("rows") or [], section.get("wait_rows") or []
    if not rows and not wait_rows:
        return None
    cases = list(dict.fromkeys(_loader_case(r) for r in rows))
    loaders = list(dict.fromkeys(r["loader"] for r in rows))
    by = {(_loader_case(r), r["loader"]): r for r in rows}
    speed = {loader: [_ok(by[(c, loader)], "img_per_s") if (c, loader) in by else None for c in cases]
             for loader in loaders}
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9.0, 1.8 * len(cases) + 5), 4.5),
                                      gridspec_kw={"width_ratios": [max(2, len(cases)), 1.5]})
    colors = {"torch DataLoader": COLORS["torch"], "DALI": COLORS["fastgan"]}
    _bars(left, cases, speed, "loader img/s (higher is better)", colors)
    left.set_title("data loading", fontsize=9)
    if wait_rows:
        labels = [r["loader"] for r in wait_rows]
        _bars(right, labels, {"wait %": [_ok(r, "wait_pct") for r in wait_rows]},
              "data wait, % of the step (lower is better)", {"wait %": COLORS["compiled"]})
        right.set_title(wait_rows[0]["label"].split(": ", 1)[-1], fontsize=9)
    else:
        right.axis("off")
    return fig


def _loader_case(row: dict) -> str:
    """A loader row's case without the loader's name: what the torch and DALI bars share."""
    return f"{row['dataset']} {row['crop_size']}x{row['crop_size']}, {row['workers']} workers"


FIGURES = {"ops": _ops_figure, "train": _train_figure, "data": _data_figure}


def write_plot(json_path: Path, result: dict, suite: str) -> Path | None:
    """Draws `suite`'s figure from the result; None when the result holds no rows of that suite."""
    if suite not in FIGURES:
        raise ValueError(f"suite must be one of {', '.join(FIGURES)}; got {suite!r}")
    fig = FIGURES[suite](result)
    if fig is None:
        return None
    fig.suptitle(_title(result), fontsize=9)
    fig.tight_layout()
    path = plot_path(json_path, suite)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(json_path: Path) -> list[Path]:
    result = json.loads(json_path.read_text())
    return [p for p in (write_plot(json_path, result, suite) for suite in PLOTTED_SUITES) if p is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for json_path in sorted(args.out.glob("*.json")):
        for path in write_plots(json_path):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
