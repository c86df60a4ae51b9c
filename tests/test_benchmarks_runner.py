"""The benchmark runner end to end in quick CPU mode, so it cannot rot between GPU sessions.

One run of `python -m benchmarks.run --suite all --quick` with a 1-second budget: each
suite still runs its first (most important) case and records the rest as skipped, so
every kind of row, the README table and the three plots are produced in well under a
minute.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert result["args"] == {"device": "cpu", "mode": "quick", "time_budget": 1.0,
                              "suites": ["train", "data", "memory", "ops"],
                              "command": "python -m benchmarks.run --suite all --quick --device cpu "
                                         f"--time-budget 1 --out {json_path.parent}"}
    machine = result["machine"]
    for key in ("device_name", "cpu_count", "torch", "fastgan_version", "fastgan", "python"):
        assert machine[key], key
    assert "dali" in machine and "driver" not in machine  # the GPU driver is recorded on CUDA runs only
    assert result["peak_bandwidth_gbps"] is None and result["peak_bandwidth_note"].startswith("n/a (CPU)")
    assert {name: state["status"] for name, state in result["suites"].items()} == {
        "train": "complete", "data": "complete", "memory": "complete", "ops": "complete"}
    assert [v["status"] for v in result["checks"]] and all(v["status"] in ("PASS", "PARTIAL", "FAIL", "N/A")
                                                           for v in result["checks"])


def test_start_up_counts_against_the_time_budget(quick_run):
    """Importing the suites imports fastgan.ops, which JIT-builds the operators when no current build
    exists (minutes with CUDA): the budget counts from before those imports, or the runner plans time
    that a GPU session's step timeout has already spent."""
    _, _, result, stdout = quick_run
    assert result["startup_s"] > 0.1  # importing torch alone takes longer than this
    first_log = float(re.match(r"\[\s*([\d.]+)s\]", stdout).group(1))
    assert first_log >= result["startup_s"]
    # The first suite's share is what start-up left of the 1 s budget, split between the four suites.
    assert result["suites"]["train"]["share_s"] <= max(0.0, 1.0 - result["startup_s"]) / 4 + 0.05


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


def test_data_suite_times_the_torch_loader_first_and_skips_the_rest(quick_run):
    _, _, result, _ = quick_run
    data = result["data"]
    rows, wait_rows = data["rows"], data["wait_rows"]
    assert rows[0]["loader"] == "torch DataLoader" and rows[0]["dataset"] == "aligned-jpeg"
    assert rows[0]["status"] == "ok" and rows[0]["img_per_s"] > 0 and rows[0]["files"] == data["schedule"]["files"]
    timed_batches = max(data["schedule"]["timed_batches"], 4 * rows[0]["workers"])
    assert rows[0]["images_timed"] == timed_batches * rows[0]["batch"]
    assert rows[0]["batches_not_timed"] == 2 * rows[0]["workers"] + 1
    assert [r["loader"] for r in rows[1:]] == ["DALI", "torch DataLoader", "DALI", "torch DataLoader",
                                               "torch DataLoader"]
    assert [r["crop_size"] for r in rows] == [256, 256, 512, 512, 256, 256]
    assert [r["loader"] for r in wait_rows] == ["torch DataLoader", "DALI"]
    assert all(r["status"] in ("skipped", "not available") for r in rows[1:] + wait_rows)


def test_ops_suite_runs_the_first_case_in_every_implementation(quick_run):
    from benchmarks.cases import impls_for
    from benchmarks.ops_suite import plan

    _, _, result, _ = quick_run
    first = [r for r in result["rows"] if r["status"] != "skipped"]
    impls = impls_for(plan("cpu", quick=True)[0][0])
    assert [r["impl"] for r in first] == list(impls)
    eager, fused = first[0], first[2]
    assert fused["status"] == "ok" and eager["status"] == "ok"
    assert fused["x_eager"] == pytest.approx(eager["median_ms"] / fused["median_ms"])
    assert fused["gbps"] == pytest.approx(fused["bytes"] / fused["median_ms"] * 1e3 / 1e9)
    # Interleaved: every implementation got the same number of samples, one per round.
    assert len({len(r["samples_ms"]) for r in first if r["status"] == "ok"}) == 1
    rest = result["rows"][len(impls):]
    assert rest and all(r["status"] == "skipped" for r in rest)


def test_memory_suite_shows_the_in_place_mode_keeping_less_for_backward(quick_run):
    _, _, result, _ = quick_run
    memory = result["memory"]
    rows = {r["variant"]: r for r in memory["rows"]}
    assert list(rows)[:3] == ["reference", "standard", "in-place"]
    assert all(r["status"] == "ok" and r["peak_mib"] is None and r["median_ms"] > 0 for r in rows.values())
    # Standard mode keeps the maps the stock layers keep (they differ in per-channel vectors only);
    # in-place mode drops each layer's conv output: 3 BN layers of the 70x70 PatchGAN at 4x6x64x64
    # -> (128x16x16 + 256x8x8 + 512x7x7) x 4 images x 4 bytes.
    assert rows["standard"]["saved_mib"] == pytest.approx(rows["reference"]["saved_mib"], rel=0.01)
    dropped = (128 * 16 * 16 + 256 * 8 * 8 + 512 * 7 * 7) * 4 * 4 / 2 ** 20
    assert rows["standard"]["saved_mib"] - rows["in-place"]["saved_mib"] == pytest.approx(dropped)
    assert rows["in-place"]["saved_vs_standard"] == pytest.approx(rows["in-place"]["saved_mib"]
                                                                 / rows["standard"]["saved_mib"])
    assert memory["peak"] == "n/a (CPU)"


def test_markdown_table_and_plots_are_written(quick_run):
    out, json_path, result, stdout = quick_run
    readme = (out / "README.md").read_text()
    assert f"`{json_path.name}`" in readme
    for heading in ("### Training steps", "### Data loading", "### Data wait in training",
                    "### Discriminator memory", "### BatchNorm2d + LeakyReLU(0.2)"):
        assert heading in readme
    assert "| pix2pix 64x64 batch 1 width 32 | pix2pix 256x256 batch 1 |" in readme
    assert "peak bandwidth n/a (CPU)" in readme and "| n/a (CPU) | n/a (CPU) |" in readme
    # A skipped data row says so once; the budget's note is counted below the tables.
    data_table = readme.split("### Data loading")[1].split("###")[0]
    assert "| skipped |" in data_table and "skipped: skipped" not in readme
    assert "rows skipped: the suite's time budget" in readme
    for suite in ("ops", "train", "data"):
        png = out / f"{json_path.stem}-{suite}.png"
        assert result["plots"][suite] == png.name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
        assert f"![{png.name}]({png.name})" in readme
    assert "Targets (reported, not asserted):" in stdout


def test_a_run_without_the_compiled_kernels_says_so_above_its_numbers(quick_run):
    """After a failed build fastgan falls back to its reference operators, and the "fused" rows time
    those: the run's section says so in bold rather than in the machine note's backend field."""
    from benchmarks.table import _render_result

    out, json_path, result, stdout = quick_run
    assert "Not fastgan's kernels" not in (out / "README.md").read_text() and "warning: fastgan" not in stdout
    fallback = json.loads(json.dumps(result))
    fallback["machine"]["fastgan"] = {"backend": "reference", "cuda": False, "path": None,
                                      "reason": "aot: ImportError: no _C; jit: RuntimeError: ninja failed"}
    text = "\n".join(_render_result(json_path, fallback))
    assert ("**Not fastgan's kernels:** fastgan ran its reference operators, no compiled library "
            "(aot: ImportError: no _C; jit: RuntimeError: ninja failed)") in text
    cpu_only = json.loads(json.dumps(result))  # a CPU build on a GPU run: CUDA tensors take the reference
    cpu_only["machine"].update(device="cuda", device_name="NVIDIA H100 80GB HBM3")
    assert "library has no CUDA kernels" in "\n".join(_render_result(json_path, cpu_only))


def _readme_with_block(path: Path, inside: str = "") -> Path:
    from benchmarks.table import PERF_BEGIN, PERF_END

    path.write_text(f"# project\n\n## Performance\n\n{PERF_BEGIN}\n{inside}\n{PERF_END}\n\n## Next\n\ntext\n")
    return path


def test_readme_performance_block_is_rewritten_from_the_newest_gpu_run(quick_run, tmp_path):
    from benchmarks.table import PERF_BEGIN, PERF_END, main

    out, json_path, result, _ = quick_run
    (tmp_path / "docs").mkdir()
    readme = _readme_with_block(tmp_path / "docs" / "README.md", "stale: 99x faster")
    assert main(["--out", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale" not in text and text.count(PERF_BEGIN) == 1 and text.count(PERF_END) == 1
    assert text.startswith("# project\n\n## Performance\n\n") and text.endswith(f"{PERF_END}\n\n## Next\n\ntext\n")
    assert "No GPU run has been published yet" in text and result["args"]["command"] in text
    rel = os.path.relpath(out, readme.parent)
    assert f"![{json_path.stem}-ops.png]({rel}/{json_path.stem}-ops.png)" in text
    assert "| pix2pix 64x64 batch 1 width 32 | pix2pix 256x256 batch 1 |" in text

    gpu = json.loads(json_path.read_text())
    gpu["machine"].update(device="cuda", device_name="NVIDIA H100 80GB HBM3")
    gpu["started"] = "2000-01-01 00:00 UTC"  # older than the CPU run, and still the one shown
    gpu["args"]["command"] = "python -m benchmarks.run --suite all --device cuda"
    partial = {**gpu, "started": "2000-01-02 00:00 UTC", "complete": False}  # newer, but cut short
    (out / "cuda-h100-20000101-0000.json").write_text(json.dumps(gpu))
    (out / "cuda-h100-20000102-0000.json").write_text(json.dumps(partial))
    try:
        assert main(["--out", str(out), "--readme", str(readme)]) == 0
        text = readme.read_text()
        assert "Latest GPU run: NVIDIA H100 80GB HBM3, 2000-01-01 00:00 UTC" in text
        assert "python -m benchmarks.run --suite all --device cuda\n" in text and "No GPU run" not in text
        assert text.count(PERF_BEGIN) == 1 and "stale" not in text
        (out / "cuda-h100-20000101-0000.json").unlink()  # only the partial GPU run is left: it is shown, as such
        assert main(["--out", str(out), "--readme", str(readme)]) == 0
        text = readme.read_text()
        assert "Latest GPU run: NVIDIA H100 80GB HBM3, 2000-01-02 00:00 UTC" in text
        assert "**partial** (stopped before the end; rows missing)" in text
    finally:
        for name in ("cuda-h100-20000101-0000.json", "cuda-h100-20000102-0000.json"):
            (out / name).unlink(missing_ok=True)


def test_readme_without_the_performance_markers_is_refused_by_name(quick_run, tmp_path, capsys):
    from benchmarks.table import PERF_BEGIN, main

    readme = tmp_path / "README.md"
    readme.write_text("# project\n\nno block here\n")
    with pytest.raises(SystemExit) as raised:
        main(["--out", str(quick_run[0]), "--readme", str(readme)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"benchmarks.table: error: {readme}: needs exactly one line '{PERF_BEGIN}'" in err
    assert "(found 0 and 0)" in err and readme.read_text() == "# project\n\nno block here\n"


def test_committed_readme_shows_the_committed_results():
    """The front page's Performance block is what the committed JSON renders to: regenerate it
    (python -m benchmarks.table --readme README.md) whenever results are added."""
    from benchmarks.table import DEFAULT_OUT, PERF_BEGIN, PERF_END, render_performance

    text = (ROOT / "README.md").read_text()
    block = PERF_BEGIN + text.split(PERF_BEGIN)[1].split(PERF_END)[0] + PERF_END
    assert block == render_performance(DEFAULT_OUT, ROOT / "README.md")


def test_unknown_suite_is_rejected_with_the_choices():
    done = _run("--suite", "everything", "--out", "/nonexistent", timeout=60)
    assert done.returncode == 2
    assert "argument --suite: invalid choice: 'everything' (choose from" in done.stderr
    assert re.search(r"ops'?, '?train'?, '?data'?, '?memory'?, '?all", done.stderr), done.stderr


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


def _fused_bn_row(shape: tuple, status: str = "ok", x_compiled: float | None = None) -> dict:
    return {"op": "bn_act", "impl": "fused", "pass": "fwd_bwd", "shape": list(shape), "dtype": "fp32",
            "layout": "NCHW", "label": "x".join(map(str, shape)), "status": status, "x_compiled": x_compiled,
            "x_eager": None}


def test_a_target_whose_rows_were_skipped_or_failed_is_not_a_pass():
    """A run cut short by its budget once read PASS on 6 of 24 selected rows: rows the target selects
    but the run did not measure make the verdict PARTIAL, and the line says how many."""
    from benchmarks import targets

    text = "BN+act fwd+bwd at batch >= 16: fused >= 1.15x torch.compile"

    def verdict(rows):
        result = {"machine": {"device": "cuda"}, "args": {"suites": ["ops"]}, "rows": rows}
        return next(v for v in targets.evaluate(result) if v["target"] == text)

    measured = [_fused_bn_row((16, 64, 128, 128), x_compiled=1.3), _fused_bn_row((16, 256, 32, 32), x_compiled=1.2)]
    assert verdict(measured)["status"] == "PASS"
    skipped = _fused_bn_row((16, 512, 16, 16), "skipped")
    compile_failed = _fused_bn_row((32, 128, 128, 128))  # fused ran, its compiled reference did not
    partial = verdict(measured + [skipped, compile_failed])
    assert (partial["status"], partial["passed"], partial["total"], partial["unmeasured"]) == ("PARTIAL", 2, 2, 2)
    assert targets.describe(partial).startswith(f"PARTIAL {text}: worst 1.20x")
    assert targets.describe(partial).endswith("2/2 rows pass, 2 more not measured (skipped, failed or not recorded)")
    failing = verdict([_fused_bn_row((16, 64, 128, 128), x_compiled=1.0), skipped])
    assert (failing["status"], failing["unmeasured"]) == ("FAIL", 1)
    nothing = verdict([skipped])
    assert nothing["status"] == "N/A" and "(1 selected: skipped, failed or not recorded)" in targets.describe(nothing)


def test_cuda_training_table_shows_speedup_and_peak_memory():
    from benchmarks.table import _train_table
    from benchmarks.training import FULL_CASES

    result = _cuda_train_result({FULL_CASES[1]: 2.5})
    assert _train_table(result)[-2] == ("| pix2pix 256x256 batch 16 | – | 10.0 | 25.0 | 2.50 | 1600.0 | 640.0 | 2048 "
                                        "| 1024 |")


class _StubABN(torch.nn.Module):
    """Stands in for inplace_abn's modules (not installed in CI): BN + LeakyReLU with its constructor."""

    def __init__(self, num_features, activation="leaky_relu", activation_param=0.01):
        super().__init__()
        assert activation == "leaky_relu"
        self.bn, self.slope = torch.nn.BatchNorm2d(num_features), activation_param

    def forward(self, x):
        return torch.nn.functional.leaky_relu(self.bn(x), self.slope)


def test_peer_rows_are_timed_interleaved_and_tabled_when_inplace_abn_imports(tmp_path, monkeypatch):
    import types

    from benchmarks import cases
    from benchmarks.ops_suite import OpsRunner
    from benchmarks.session import Session
    from benchmarks.table import _table
    from benchmarks.timing import Timer

    stub = types.ModuleType("inplace_abn")
    stub.InPlaceABN, stub.ABN = type("InPlaceABN", (_StubABN,), {}), type("ABN", (_StubABN,), {})
    monkeypatch.setitem(sys.modules, "inplace_abn", stub)
    monkeypatch.setattr(cases, "_compile", lambda module: module)  # the compile itself is not under test
    result = {"machine": {"device": "cpu"}, "rows": [], "copy_bandwidth_gbps": None, "peak_bandwidth_gbps": None}
    runner = OpsRunner(Session(tmp_path / "r.json", result, 0.0), "cpu", Timer("cpu", 0.001, reps=3, warmup=1),
                       deadline=1e9)
    runner.run_case(cases.BnCase((2, 4, 8, 8)), "fwd_bwd", first_case=True)
    rows = {r["impl"]: r for r in result["rows"]}
    assert list(rows) == ["eager", "compiled", "fused", "inplace_abn", "abn"]
    assert all(r["status"] == "ok" and len(r["samples_ms"]) == 3 for r in rows.values())
    fused = rows["fused"]
    for peer in ("inplace_abn", "abn"):
        assert fused[f"x_{peer}"] == pytest.approx(rows[peer]["median_ms"] / fused["median_ms"])
    table = "\n".join(_table(result, "bn_act"))
    assert "| inplace_abn ms | abn ms |" in table and "| fused vs inplace_abn | fused vs abn |" in table
    assert "Peers: inplace_abn is InPlaceABN" in table
    # InPlaceABN's step clones x: the clone, sampled in the same rounds, is taken out round by round.
    peer = rows["inplace_abn"]
    assert peer["clone_ms"] > 0 and peer["median_ms"] < peer["raw_median_ms"]
    assert "clone" not in rows and all("clone_ms" not in r for r in rows.values() if r is not peer)
    # Without the peers the case times the three implementations only.
    monkeypatch.setitem(sys.modules, "inplace_abn", None)
    assert cases.impls_for(cases.BnCase((2, 4, 8, 8))) == cases.IMPLS
    assert cases.impls_for(cases.LossCase("vanilla", 1, 30)) == cases.IMPLS


def test_data_wait_and_loader_rows_with_both_loaders(tmp_path):
    """Both loaders over the same written JPEG pairs, then the data-wait measurement through the
    trainer's make_loader; DALI runs its CPU operators here (CI installs the wheel)."""
    from benchmarks import data_suite, targets
    from benchmarks.training import TrainCase
    from fastgan.data import AlignedDataset

    pytest.importorskip("nvidia.dali")
    from PIL import Image

    folder = data_suite.write_photo_pairs(tmp_path / "pairs", count=8, size=32)
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == 8
    assert all(Image.open(f).size == (64, 32) for f in files)
    assert files[0].read_bytes() == data_suite.write_photo_pairs(tmp_path / "again", 1, 32).joinpath(
        "00000.jpg").read_bytes()  # the same pairs for the same seed

    rows = []
    for loader in ("torch", "dali"):
        case = data_suite.LoaderCase("aligned-jpeg", 1, crop_size=32, batch=4, loader=loader)
        dataset = AlignedDataset(folder, load_size=case.load_size, crop_size=32, flip=True, train=True)
        measure = (data_suite.dali_images_per_s(dataset, case, 2, "cpu") if loader == "dali"
                   else data_suite.images_per_s(dataset, case, 2, "cpu"))
        rows.append({**data_suite._loader_row(case, 8, False), **measure})
    data_suite._fill_dali_ratios(rows)
    assert rows[1]["x_torch"] == pytest.approx(rows[1]["img_per_s"] / rows[0]["img_per_s"])
    assert rows[0]["x_torch"] is None and rows[0]["images_timed"] == 4 * 4

    train = TrainCase("pix2pix", 32, 2, width=8)
    for loader in ("torch", "dali"):
        dataset = AlignedDataset(folder, load_size=36, crop_size=32, flip=True, train=True)
        wait = data_suite.data_wait(dataset, data_suite.WaitCase(train, 1, loader), 3, "cpu")
        assert wait["steps_timed"] == 3 and wait["steps_not_timed"] == 3  # 2 x workers + 1
        # 8 files in batches of 2: steps 3-5 are timed, and step 4 starts the second epoch.
        assert wait["steps_per_epoch"] == 4 and wait["epoch_start_wait_ms"] > 0
        if loader == "dali":  # the runner's handoff is part of next(), step by step
            assert 0 < wait["median_handoff_ms"] <= wait["median_loader_ms"]
            assert 0 <= wait["ready_at_handoff_pct"] <= 100
        else:
            assert wait["median_handoff_ms"] is None and wait["ready_at_handoff_pct"] is None
        assert 0 < wait["wait_pct"] < 100 and wait["median_wait_ms"] < wait["median_step_ms"]
        assert 0 < wait["median_loader_ms"] <= wait["median_wait_ms"]  # next() is part of each step's wait
        assert wait["img_per_s"] > 0
        # Asynchronous rounds: 3 x 3 steps fed and as many resident; the cost is the fed steps' extra time.
        assert wait["async_steps_timed"] == 9 and wait["async_step_ms"] > 0 and wait["async_resident_step_ms"] > 0
        extra = wait["async_step_ms"] - wait["async_resident_step_ms"]
        assert wait["async_cost_pct"] == pytest.approx(max(0.0, 100 * extra / wait["async_step_ms"]))

    # The GPU targets judge DALI rows only: loader ratios over 2,000 files, the wait at pix2pix 256^2 batch 16.
    full = TrainCase("pix2pix", 256, 16)
    result = {"machine": {"device": "cuda"}, "args": {"suites": ["data"]}, "data": {
        "rows": [{**rows[1], "files": 2000, "x_torch": 2.5}, {**rows[1], "files": 2000, "x_torch": 1.5},
                 {**rows[0], "files": 2000}],
        "wait_rows": [{**data_suite._wait_row(data_suite.WaitCase(full, 16, "dali"), 2000), "wait_pct": 1.2,
                       "async_cost_pct": 3.5},
                      {**data_suite._wait_row(data_suite.WaitCase(full, 16, "torch"), 2000), "wait_pct": 9.0,
                       "async_cost_pct": 0.5}]}}
    verdicts = {v["metric"]: v for v in targets.evaluate(result)}
    assert (verdicts["x_torch"]["status"], verdicts["x_torch"]["worst"], verdicts["x_torch"]["total"]) == \
        ("FAIL", 1.5, 2)
    assert (verdicts["wait_pct"]["status"], verdicts["wait_pct"]["worst"], verdicts["wait_pct"]["total"]) == \
        ("PASS", 1.2, 1)
    assert "worst 1.20%" in targets.describe(verdicts["wait_pct"])
    assert (verdicts["async_cost_pct"]["status"], verdicts["async_cost_pct"]["worst"]) == ("FAIL", 3.5)


def test_copy_bandwidth_is_timed_and_positive():
    """The roofline's copy runs on any device (the GPU run once lost it to a missing method)."""
    from benchmarks.ops_suite import copy_bandwidth_gbps
    from benchmarks.timing import Timer

    timer = Timer("cpu", sample_s=0.005, reps=3, warmup=1)
    assert copy_bandwidth_gbps(timer, device="cpu", mib=4) > 0


def test_suite_list_runs_several_suites_in_the_run_order():
    from benchmarks.run import suite_list

    assert suite_list("ops,train") == ("train", "ops")
    assert suite_list("all") == ("train", "data", "memory", "ops")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid choice: 'dat'"):
        suite_list("train,dat")


def test_front_page_keeps_each_suite_from_the_newest_gpu_run_that_measured_it(tmp_path):
    """A GPU run of the train suite alone replaces the training numbers; data, memory and ops stay
    on the front page from the earlier run, labelled with where they came from."""
    from benchmarks.table import render_performance

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    full_path = next(p for p in sorted(results.glob("cuda-*.json"))
                     if json.loads(p.read_text()).get("complete"))
    full = json.loads(full_path.read_text())
    (tmp_path / full_path.name).write_text(json.dumps(full))
    train_only = {**full, "started": "2099-01-01 00:00 UTC", "rows": [], "data": None, "memory": None,
                  "suites": {"train": {"status": "complete", "elapsed_s": 1.0, "share_s": 2.0}},
                  "args": {**full["args"], "suites": ["train"], "command": "python -m benchmarks.run --suite train"}}
    (tmp_path / "cuda-later.json").write_text(json.dumps(train_only))
    block = render_performance(tmp_path, tmp_path / "README.md")
    assert "Latest GPU run:" in block and "python -m benchmarks.run --suite train" in block
    for suite in ("data", "memory", "ops"):
        assert f"### The {suite} suite, from an earlier GPU run" in block
    assert "### The train suite, from an earlier" not in block
    assert f"These rows are from `{full_path.name}`" in block
    assert "| DALI | DALI aligned-jpeg 256x256 batch 16" in block
    # The copy bandwidth is measured by the ops suite: the train-only run claims no ('–') copy, and
    # the ops tables, with their "% of copy" column, come with the copy of the run that measured them.
    lead, ops_part = block.split("### The")[0], block.split("### The ops suite")[1].split("### The")[0]
    assert "Device-to-device copy" not in lead
    copy = full["copy_bandwidth_gbps"]  # None in the first GPU run, which lost it to a bug
    assert f"measured in the same run: {'–' if copy is None else format(copy, '.0f')} GB/s" in ops_part


def test_a_suite_that_failed_before_its_first_row_keeps_the_earlier_runs_numbers(tmp_path):
    """A later GPU run whose data suite errored at once (DALI did not import, say) measured no data:
    the front page keeps the earlier run's data rows, and still shows the later run's training."""
    from benchmarks.table import render_performance

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    full_path = next(p for p in sorted(results.glob("cuda-*.json"))
                     if json.loads(p.read_text()).get("complete"))
    full = json.loads(full_path.read_text())
    (tmp_path / full_path.name).write_text(json.dumps(full))
    later = {**full, "started": "2099-01-01 00:00 UTC", "rows": [], "memory": None,
             "data": {**(full.get("data") or {}), "rows": [], "wait_rows": []},
             "suites": {"train": {"status": "complete", "elapsed_s": 1.0, "share_s": 2.0},
                        "data": {"status": "error: ImportError: no DALI", "elapsed_s": 0.1, "share_s": 2.0}},
             "args": {**full["args"], "suites": ["train", "data"],
                      "command": "python -m benchmarks.run --suite train,data"}}
    (tmp_path / "cuda-later.json").write_text(json.dumps(later))
    block = render_performance(tmp_path, tmp_path / "README.md")
    assert "### The data suite, from an earlier GPU run" in block
    assert "| DALI | DALI aligned-jpeg 256x256 batch 16" in block


def test_a_stated_source_commit_replaces_the_devices_stale_git(monkeypatch):
    """The GPU machine runs a copy of the working tree beside an old copy of .git: the commit the
    caller states is recorded, not that copy's HEAD."""
    from benchmarks.machine import machine_info
    monkeypatch.setenv("FASTGAN_SOURCE_COMMIT", "0123456789abcdef")
    assert machine_info("cpu")["git"] == {"commit": "0123456789abcdef", "dirty": None,
                                          "stated_by": "FASTGAN_SOURCE_COMMIT"}
    monkeypatch.delenv("FASTGAN_SOURCE_COMMIT")
    assert re.fullmatch(r"[0-9a-f]{40}", machine_info("cpu")["git"]["commit"])


def _gpu_session_log(tmp_path: Path, **env: str) -> str:
    """benchmarks/gpu_session.sh from a copy of its folder (it runs in the folder above its own, so
    nothing of the checkout, such as a carried .carry/, is touched), with no session time left:
    its checks and summary run, its steps do not."""
    (tmp_path / "benchmarks").mkdir()
    script = tmp_path / "benchmarks" / "gpu_session.sh"
    script.write_text((ROOT / "benchmarks" / "gpu_session.sh").read_text())
    base = {k: v for k, v in os.environ.items() if k != "FASTGAN_SOURCE_COMMIT"}
    done = subprocess.run(["bash", str(script), "bench"], capture_output=True, text=True, timeout=120,
                          env={**base, "SESSION_S": "0", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
                               **env})
    assert done.returncode == 0, done.stderr
    return (tmp_path / "out" / "session.log").read_text()


@pytest.mark.parametrize("stated", [None, "", "$H"])
def test_gpu_session_warns_when_the_source_commit_is_not_stated(tmp_path, stated):
    log = _gpu_session_log(tmp_path, **({} if stated is None else {"FASTGAN_SOURCE_COMMIT": stated}))
    summary = log.split("== summary")[1]
    assert "commit: FASTGAN_SOURCE_COMMIT=" in summary and "may be stale" in summary
    assert "bench: not run, session time spent" in summary


def test_gpu_session_takes_a_stated_source_commit_without_warning(tmp_path):
    log = _gpu_session_log(tmp_path, FASTGAN_SOURCE_COMMIT="0123456789abcdef0123456789abcdef01234567")
    assert "FASTGAN_SOURCE_COMMIT" not in log and "bench: not run, session time spent" in log


def test_gpu_session_skips_a_bench_whose_budget_would_be_under_30_s(tmp_path):
    """80 s of session leave the bench step about 65 s: its 45 s margin would leave a budget of 20 s, in
    which each suite would still start its first row and overrun the step's timeout."""
    log = _gpu_session_log(tmp_path, SESSION_S="80", FASTGAN_SOURCE_COMMIT="0123456")
    assert "bench: not run, session time spent (" in log and "under the 45 s margin plus 30 s" in log
    assert "== bench" not in log


def test_memory_progress_line_without_a_standard_variant():
    """The standard variant failed: the other variants' lines have no ratio to it, and no crash."""
    from benchmarks.memory_suite import _progress
    row = {"label": "pix2pix D", "variant": "in-place", "status": "ok", "peak_mib": None, "saved_mib": 12.5,
           "saved_vs_standard": None, "median_ms": 3.25}
    line = _progress(row)
    assert "saved     12.5 MiB" in line and "standard" not in line and "3.25 ms fwd+bwd" in line
