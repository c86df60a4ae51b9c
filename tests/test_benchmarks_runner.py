"""The benchmark runner end to end in quick CPU mode, so it cannot rot between GPU sessions.

One run of `python -m benchmarks.run --suite all --quick` with a 1-second budget: each
suite still runs its first (most important) case and records the rest as skipped, so
every kind of row, the README table and the three plots are produced in well under a
minute.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = _run("--suite", "all", "--quick", "--device", "cpu", "--time-budget", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (json_path,) = out.glob("*.json")
    return out, json_path, json.loads(json_path.read_text()), done.stdout


def test_json_records_the_machine_and_every_suite(quick_run):
    _, json_path, result, _ = quick_run
    assert re.fullmatch(rf"cpu-[a-z0-9-]+-{result['machine']['cpu_count']}cpu-\d{{8}}-\d{{4}}\.json", json_path.name)
    assert result["schema"] == 2 and result["complete"] is True and result["finished"]
    assert result["args"] == {"device": "cpu", "mode": "quick", "time_budget": 1.0, "suites": ["train", "data", "ops"]}
    machine = result["machine"]
    for key in ("device_name", "cpu_count", "torch", "fastgan_version", "fastgan", "python"):
        assert machine[key], key
    assert "dali" in machine and "driver" not in machine  # the GPU driver is recorded on CUDA runs only
    assert result["peak_bandwidth_gbps"] is None and result["peak_bandwidth_note"].startswith("n/a (CPU)")
    assert {name: state["status"] for name, state in result["suites"].items()} == {
        "train": "complete", "data": "complete", "ops": "complete"}
    assert [v["status"] for v in result["checks"]] and all(v["status"] in ("PASS", "FAIL", "N/A")
                                                           for v in result["checks"])


def test_train_suite_measures_its_first_case_and_skips_the_rest(quick_run):
    _, _, result, _ = quick_run
    train = result["train"]
    assert train["configs"]["fastgan"]["precision"] == "fp32"  # CPU: no bf16 (see precision_note)
    assert train["configs"]["reference"]["memory_format"] == "NCHW"
    assert train["configs"]["fastgan"]["memory_format"] == "channels_last"
    assert "bf16" in train["precision_note"] and train["memory"].startswith("n/a (CPU)")
    first = [r for r in train["rows"] if r["status"] == "ok"]
    assert [r["config"] for r in first] == ["reference", "fastgan"]
    assert {r["label"] for r in first} == {"pix2pix 64x64 batch 1 width 32"}
    reference, fastgan = first
    for row in first:
        assert row["stands_for"] == "pix2pix 256x256 batch 1" and row["peak_memory_mib"] is None
        assert len(row["samples_ms"]) == train["schedule"]["rounds"]
        assert row["img_per_s"] == pytest.approx(row["batch"] / (row["median_step_ms"] / 1e3))
    assert fastgan["x_reference"] == pytest.approx(fastgan["img_per_s"] / reference["img_per_s"])
    skipped = [r for r in train["rows"] if r["status"] == "skipped"]
    assert len(skipped) == 4 and all(r["note"].startswith("skipped: the suite's time budget") for r in skipped)


def test_data_suite_times_the_torch_loader_and_plans_dali(quick_run):
    _, _, result, _ = quick_run
    rows = result["data"]["rows"]
    assert rows[0]["loader"] == "torch DataLoader" and rows[0]["dataset"] == "aligned-jpeg"
    assert rows[0]["status"] == "ok" and rows[0]["img_per_s"] > 0
    timed_batches = max(result["data"]["schedule"]["timed_batches"], 4 * rows[0]["workers"])
    assert rows[0]["images_timed"] == timed_batches * rows[0]["batch"]
    assert rows[0]["batches_not_timed"] == 2 * rows[0]["workers"] + 1
    assert [r["status"] for r in rows[1:-1]] == ["skipped", "skipped"]
    assert rows[-1]["loader"] == "DALI" and rows[-1]["status"] in ("skipped", "not available")


def test_ops_suite_runs_the_first_case_in_every_implementation(quick_run):
    _, _, result, _ = quick_run
    first = [r for r in result["rows"] if r["status"] != "skipped"]
    assert [r["impl"] for r in first] == ["eager", "compiled", "fused"]
    eager, fused = first[0], first[2]
    assert fused["status"] == "ok" and eager["status"] == "ok"
    assert fused["x_eager"] == pytest.approx(eager["median_ms"] / fused["median_ms"])
    assert fused["gbps"] == pytest.approx(fused["bytes"] / fused["median_ms"] * 1e3 / 1e9)
    assert all(r["status"] == "skipped" for r in result["rows"][3:]) and len(result["rows"]) > 3


def test_markdown_table_and_plots_are_written(quick_run):
    out, json_path, result, stdout = quick_run
    readme = (out / "README.md").read_text()
    assert f"`{json_path.name}`" in readme
    for heading in ("### Training steps", "### Data loading", "### BatchNorm2d + LeakyReLU(0.2)"):
        assert heading in readme
    assert "| pix2pix 64x64 batch 1 width 32 | pix2pix 256x256 batch 1 |" in readme
    assert "peak bandwidth n/a (CPU)" in readme and "| n/a (CPU) | n/a (CPU) |" in readme
    for suite in ("ops", "train", "data"):
        png = out / f"{json_path.stem}-{suite}.png"
        assert result["plots"][suite] == png.name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
        assert f"![{png.name}]({png.name})" in readme
    assert "Targets (reported, not asserted):" in stdout


def test_unknown_suite_is_rejected_with_the_choices():
    done = _run("--suite", "everything", "--out", "/nonexistent", timeout=60)
    assert done.returncode == 2
    assert "argument --suite: invalid choice: 'everything' (choose from" in done.stderr
    assert re.search(r"ops'?, '?train'?, '?data'?, '?all", done.stderr), done.stderr


def _cuda_train_result(speedups: dict) -> dict:
    """A CUDA results document holding only training rows, fastgan `x` times faster per case."""
    from benchmarks.train_suite import empty_row
    from benchmarks.training import REFERENCE, fastgan_config

    rows = []
    for case, x in speedups.items():
        reference, fastgan = empty_row(case, REFERENCE), empty_row(case, fastgan_config("cuda"))
        reference.update(img_per_s=10.0, median_step_ms=1e3 * case.batch / 10.0, x_reference=1.0,
                         peak_memory_mib=2048.0)
        fastgan.update(img_per_s=10.0 * x, median_step_ms=1e3 * case.batch / (10.0 * x), x_reference=x,
                       peak_memory_mib=1024.0)
        rows += [reference, fastgan]
    return {"machine": {"device": "cuda"}, "rows": [], "train": {"rows": rows}}


def test_training_targets_are_judged_on_the_issues_shapes_only():
    from benchmarks import targets
    from benchmarks.train_suite import QUICK_CPU_CASES
    from benchmarks.training import FULL_CASES

    pix2pix_1, pix2pix_16, dcgan = FULL_CASES
    result = _cuda_train_result({pix2pix_1: 3.2, pix2pix_16: 1.5, dcgan: 3.0, QUICK_CPU_CASES[1]: 10.0})
    verdicts = {v["target"]: v for v in targets.evaluate(result) if v["target"].startswith("training")}
    assert {t: (v["status"], v["worst"], v["total"]) for t, v in verdicts.items()} == {
        "training pix2pix 256^2 batch 1: fastgan >= 3x reference img/s": ("PASS", 3.2, 1),
        "training pix2pix 256^2 batch 16: fastgan >= 2x reference img/s": ("FAIL", 1.5, 1),
        "training DCGAN 64^2 batch 128: fastgan >= 3x reference img/s": ("PASS", 3.0, 1)}
    assert verdicts["training pix2pix 256^2 batch 16: fastgan >= 2x reference img/s"]["worst_case"] == \
        "pix2pix 256x256 batch 16"


def test_cuda_training_table_shows_speedup_and_peak_memory():
    from benchmarks.table import _train_table
    from benchmarks.training import FULL_CASES

    result = _cuda_train_result({FULL_CASES[1]: 2.5})
    assert _train_table(result)[-2] == ("| pix2pix 256x256 batch 16 | – | 10.0 | 25.0 | 2.50 | 1600.0 | 640.0 | 2048 "
                                        "| 1024 |")
