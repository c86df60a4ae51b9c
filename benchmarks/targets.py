"""The speed targets, judged from a results file's rows.

Targets are reported (PASS / PARTIAL / FAIL / N/A), never asserted: a slow kernel is news for
the table, not a reason to lose the run's other numbers. A row the target selects but the run did
not measure (skipped by the budget, failed, or its reference failed) is never a pass: when every
measured row passes and some were not measured, the verdict is PARTIAL, not PASS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks.cases import CPU_REFERENCE_SHAPES, LARGE_SHAPES


@dataclass(frozen=True)
class Target:
    device: str
    text: str
    metric: str  # a row field; "pct_bandwidth" means pct_peak if a nominal peak is known, else pct_copy
    threshold: float
    selects: Callable[[dict], bool]
    unit: str = "x"
    # whose rows: ops (result["rows"], fused rows), train (result["train"]["rows"], fastgan rows) or
    # data (result["data"]["rows"] and ["wait_rows"], DALI rows)
    suite: str = "ops"
    at_most: bool = False  # the value must stay below the threshold (a cost), not reach it (a speed-up)


def _bn_fwd_bwd(row: dict) -> bool:
    return row["op"] == "bn_act" and row["pass"] == "fwd_bwd"


def _train(family: str, image_size: int, batch: int) -> Callable[[dict], bool]:
    """The issue's own shape only: a reduced CPU stand-in says nothing about the GPU target."""
    return lambda r: (r["family"], r["image_size"], r["batch"], r["width"]) == (family, image_size, batch, 64)


def _pix2pix_b16_fed_from_files(row: dict) -> bool:
    """The issue's data-wait case: pix2pix 256^2 batch 16 trained from 2,000+ JPEG files."""
    return ((row.get("family"), row.get("image_size"), row.get("batch")) == ("pix2pix", 256, 16)
            and row.get("files", 0) >= 2000)


TARGETS = (
    Target("cpu", "BN+act fwd+bwd at the CPU reference shapes 16x64x64x64, 16x256x16x16, 4x128x64x64 (fp32 NCHW): "
           "fused >= 1.3x eager", "x_eager", 1.3,
           lambda r: _bn_fwd_bwd(r) and tuple(r["shape"]) in CPU_REFERENCE_SHAPES
           and r["dtype"] == "fp32" and r["layout"] == "NCHW"),
    Target("cpu", "aim: same rows, fused >= 2x eager", "x_eager", 2.0,
           lambda r: _bn_fwd_bwd(r) and tuple(r["shape"]) in CPU_REFERENCE_SHAPES
           and r["dtype"] == "fp32" and r["layout"] == "NCHW"),
    Target("cpu", "aim: same rows, fused >= 1.4x torch.compile", "x_compiled", 1.4,
           lambda r: _bn_fwd_bwd(r) and tuple(r["shape"]) in CPU_REFERENCE_SHAPES
           and r["dtype"] == "fp32" and r["layout"] == "NCHW"),
    Target("cuda", "BN+act fwd+bwd at batch >= 16: fused >= 1.6x eager", "x_eager", 1.6,
           lambda r: _bn_fwd_bwd(r) and r["shape"][0] >= 16),
    Target("cuda", "BN+act fwd+bwd at batch >= 16: fused >= 1.15x torch.compile", "x_compiled", 1.15,
           lambda r: _bn_fwd_bwd(r) and r["shape"][0] >= 16),
    Target("cuda", "BN+act at the large shapes (fwd and fwd+bwd): fused >= 80% of peak bandwidth",
           "pct_bandwidth", 80.0,
           lambda r: r["op"] == "bn_act" and tuple(r["shape"]) in LARGE_SHAPES, unit="%"),
    Target("cuda", "D loss fwd+bwd: fused >= 4x eager", "x_eager", 4.0, lambda r: r["op"] == "d_loss"),
    Target("cuda", "training pix2pix 256^2 batch 1: fastgan >= 3x reference img/s", "x_reference", 3.0,
           _train("pix2pix", 256, 1), suite="train"),
    Target("cuda", "training pix2pix 256^2 batch 16: fastgan >= 2x reference img/s", "x_reference", 2.0,
           _train("pix2pix", 256, 16), suite="train"),
    Target("cuda", "training DCGAN 64^2 batch 128: fastgan >= 3x reference img/s", "x_reference", 3.0,
           _train("dcgan", 64, 128), suite="train"),
    Target("cuda", "loading 2,000 JPEG pairs at 256^2 and 512^2: DALI >= 2x the torch DataLoader's img/s",
           "x_torch", 2.0, lambda r: r.get("dataset") == "aligned-jpeg" and r.get("files", 0) >= 2000, suite="data"),
    Target("cuda", "pix2pix 256^2 batch 16 fed by DALI: data wait < 2% of the step time", "wait_pct", 2.0,
           _pix2pix_b16_fed_from_files, unit="%", suite="data", at_most=True),
    Target("cuda", "same training run asynchronously, as the trainer runs: DALI's cost < 2% of the step time",
           "async_cost_pct", 2.0, _pix2pix_b16_fed_from_files, unit="%", suite="data", at_most=True),
)


def suite_rows(result: dict, suite: str) -> list[dict]:
    """Every row a run recorded for `suite`, wherever its section keeps them."""
    if suite == "ops":
        return result.get("rows") or []
    section = result.get(suite) or {}
    return (section.get("rows") or []) + (section.get("wait_rows") or [])


def subject_rows(result: dict, suite: str) -> list[dict]:
    """The rows a target of `suite` judges: the fused implementation's, DALI's, or the fastgan configuration's."""
    if suite == "ops":
        return [r for r in suite_rows(result, suite) if r["impl"] == "fused"]
    if suite == "data":
        return [r for r in suite_rows(result, suite) if r["loader"] == "DALI"]
    return [r for r in suite_rows(result, suite) if r["config"] == "fastgan"]


def row_name(row: dict) -> str:
    return row["label"] + (f" {row['pass']}" if "pass" in row else "")


def evaluate(result: dict, suite: str | None = None) -> list[dict]:
    """One verdict per target of the result's device and suites (or of `suite` alone), from its successful
    fused / fastgan rows."""
    device = result["machine"]["device"]
    suites = result.get("args", {}).get("suites")  # None in files from before the suites existed
    if suite is not None:
        suites = [suite]
    nominal = result.get("peak_bandwidth_gbps") is not None
    verdicts = []
    for target in TARGETS:
        if target.device != device or (suites is not None and target.suite not in suites):
            continue
        metric = target.metric
        if metric == "pct_bandwidth":
            metric = "pct_peak" if nominal else "pct_copy"
        selected = [row for row in subject_rows(result, target.suite) if target.selects(row)]
        values = [(row[metric], row_name(row)) for row in selected
                  if row["status"] == "ok" and row.get(metric) is not None]
        verdict = {"target": target.text, "metric": metric, "threshold": target.threshold,
                   "unit": target.unit, "total": len(values), "unmeasured": len(selected) - len(values)}
        if not values:
            verdict.update(status="N/A", passed=0, worst=None, worst_case=None)
        else:
            worst, worst_case = max(values) if target.at_most else min(values)
            passed = sum((value < target.threshold) if target.at_most else (value >= target.threshold)
                         for value, _ in values)
            status = "FAIL" if passed < len(values) else "PARTIAL" if verdict["unmeasured"] else "PASS"
            verdict.update(status=status, passed=passed, worst=worst, worst_case=worst_case)
        verdicts.append(verdict)
    return verdicts


def describe(verdict: dict) -> str:
    """One line: status, target, worst value and where, rows passing."""
    if verdict["status"] == "N/A":
        unmeasured = verdict.get("unmeasured")
        why = f" ({unmeasured} selected: skipped, failed or not recorded)" if unmeasured else ""
        return f"N/A   {verdict['target']}: no rows measured{why}"
    unit = verdict["unit"]
    worst = f"{verdict['worst']:.2f}{unit}" if unit == "x" or verdict["worst"] < 10 else f"{verdict['worst']:.0f}{unit}"
    base = "" if verdict["metric"] != "pct_copy" else " of measured copy (nominal peak unknown)"
    unmeasured = verdict.get("unmeasured")  # absent from verdicts stored before it was counted
    rest = f", {unmeasured} more not measured (skipped, failed or not recorded)" if unmeasured else ""
    return (f"{verdict['status']:<5} {verdict['target']}: worst {worst}{base} ({verdict['worst_case']}), "
            f"{verdict['passed']}/{verdict['total']} rows pass{rest}")
