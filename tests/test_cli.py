"""The inference tools on small trained checkpoints: translate, sample, evaluate."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan import checkpoint, evaluate, sample, translate
from fastgan.train import main as train

from conftest import ROOT
from train_helpers import TINY_PIX2PIX, tiny_dcgan, write_aligned, write_images


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert train([*TINY_PIX2PIX, "--train.out_dir", str(root / "pix2pix"), "--train.max_steps", "2"]) == 0
    write_images(root / "images", 8)
    write_images(root / "classes" / "a", 4, seed=1)
    write_images(root / "classes" / "b", 4, seed=2)
    assert train([*tiny_dcgan(root / "images"), "--train.out_dir", str(root / "dcgan"),
                  "--train.max_steps", "2"]) == 0
    assert train([*tiny_dcgan(root / "classes", "conditional"), "--train.out_dir", str(root / "conditional"),
                  "--train.max_steps", "2"]) == 0
    return root


def ckpt(runs, name):
    return str(runs / name / "ckpt_00000002.pt")


def test_translate_keeps_names_and_skips_unreadable(runs, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 3, size=50)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        assert translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src),
                               "--output", str(tmp_path / "out"), "--batch-size", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000.png", "001.png", "002.png"]
    assert Image.open(tmp_path / "out" / "000.png").size == (32, 32)  # the training crop size
    out = capsys.readouterr().out
    assert "wrote 3 image(s) to" in out and "skipped 1 unreadable file" in out


def test_translate_train_mode_is_the_papers_protocol_and_repeats(runs, tmp_path):
    """--train-mode: dropout on and each batch's own BatchNorm statistics (so other pixels than eval
    mode's), its dropout seeded (so the same pixels twice); a one-image batch still works."""
    write_images(tmp_path / "in", 2, size=32)

    def run(*extra):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(tmp_path / "in"),
                               "--output", str(out), "--batch-size", "1", *extra]) == 0
        return np.stack([np.asarray(Image.open(out / f"{i:03d}.png")) for i in range(2)])

    eval_mode, paper, again = run(), run("--train-mode"), run("--train-mode")
    assert np.array_equal(paper, again) and not np.array_equal(paper, eval_mode)


def test_train_mode_is_for_pix2pix_only(runs, tmp_path):
    with pytest.raises(SystemExit, match="--train-mode is pix2pix's test protocol; dcgan generators run in eval mode"):
        evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images"), "--train-mode"])


def contents(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_translate_refuses_to_overwrite_its_inputs(runs, tmp_path):
    src = tmp_path / "in"
    write_images(src, 2)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src / "photo.jpg")
    before = contents(src)
    with pytest.raises(SystemExit, match=f"--output {src}: the result {src / '000.png'} would overwrite the input "
                                         f"{src / '000.png'}; give another --output folder"):
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src), "--output", str(src)])
    with pytest.raises(SystemExit, match="would overwrite the input"):  # one file, into its own folder
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src / "001.png"), "--output", str(src)])
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "000.png").symlink_to(src / "000.png")
    with pytest.raises(SystemExit, match=f"would overwrite the input {src / '000.png'}"):
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src), "--output",
                        str(tmp_path / "linked")])
    assert contents(src) == before, "nothing was translated"
    assert translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src / "photo.jpg"),
                           "--output", str(src)]) == 0  # photo.png is no input: same folder, no harm
    assert sorted(contents(src)) == ["000.png", "001.png", "photo.jpg", "photo.png"]
    assert {k: v for k, v in contents(src).items() if k != "photo.png"} == before


def test_translate_refuses_inputs_that_share_an_output_name(runs, tmp_path, capsys):
    src = tmp_path / "in"
    write_images(src, 2)
    for name in ("photo.jpg", "photo.png", "001.webp"):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src / name)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=re.escape(f"--input {src / '001.png'}, {src / '001.webp'} would be written "
                                                   f"to one file, {out / '001.png'} (1 more name(s) clash); outputs "
                                                   f"are named <input name>.png (names differing only in case")):
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src), "--output", str(out)])
    assert not out.exists()
    (src / "001.webp").unlink()
    (src / "photo.jpg").rename(src / "Photo.jpg")  # photo.png and Photo.png: one file on macOS and Windows
    with pytest.raises(SystemExit, match=re.escape(f"--input {src / 'Photo.jpg'}, {src / 'photo.png'} would be "
                                                   f"written to one file, {out / 'Photo.png'}, {out / 'photo.png'}; ")):
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src), "--output", str(out)])
    assert not out.exists()
    (src / "Photo.jpg").rename(src / "other.jpg")
    capsys.readouterr()
    assert translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(src), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "other.png", "photo.png"]
    assert f"wrote 4 image(s) to {out}" in capsys.readouterr().out


def test_translate_aligned_half_and_size(runs, tmp_path):
    image = np.zeros((64, 128, 3), np.uint8)
    image[:, 64:] = 255
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "pair.png")
    assert translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(tmp_path / "in" / "pair.png"),
                           "--output", str(tmp_path / "out"), "--aligned", "AtoB", "--size", "64"]) == 0
    assert Image.open(tmp_path / "out" / "pair.png").size == (64, 64)


@pytest.mark.parametrize("argv, message", [
    (["--size", "40"], "--size 40 must be a multiple of 32"),
    (["--size", "0"], "--size must be >= 1, got 0"),
    (["--input", "/nonexistent/x"], "no such file or folder"),
    (["--aligned", "AtoB"], r"--aligned: aligned image .*000\.png is 40x40; an A\|B image holds two square halves "
                            r"side by side, so its width must be even and twice its height"),
    (["--output", "FILE"], r"--output .*000\.png is a file; give a folder"),
    (["--output", "FILE/sub"], r"--output .*000\.png/sub: cannot create the folder, a file stands in its path"),
    (["--device", "gpu"], "--device gpu: not a device; use auto, cpu, cuda or cuda:N"),
])
def test_translate_errors(runs, tmp_path, argv, message):
    base = {"--checkpoint": ckpt(runs, "pix2pix"), "--input": str(tmp_path), "--output": str(tmp_path / "o")}
    write_images(tmp_path, 1)
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value.replace("FILE", str(tmp_path / "000.png"))
    with pytest.raises(SystemExit, match=message):
        translate.main([x for kv in base.items() for x in kv])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("tool", ["translate", "sample"])
@pytest.mark.parametrize("below", [False, True], ids=["folder", "subfolder"])
def test_an_output_nobody_may_write_is_one_line_before_any_work(runs, tmp_path, monkeypatch, unwritable_folder,
                                                                  tool, below):
    """A read-only --output folder (or one that cannot be made there) was a PermissionError traceback at
    the first image written, after the generator had run."""
    write_images(tmp_path / "in", 1)
    out = unwritable_folder / "fastgan_out" if below else unwritable_folder
    module = {"translate": translate, "sample": sample}[tool]
    if tool == "translate":
        argv = ["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(tmp_path / "in"), "--output", str(out)]
        monkeypatch.setattr(translate, "load_input", lambda *a: pytest.fail("translated before checking --output"))
    else:
        argv = ["--checkpoint", ckpt(runs, "dcgan"), "--output", str(out / "g.png")]
        monkeypatch.setattr(sample, "open_for_cli", lambda args: pytest.fail("sampled before checking --output"))
    reason = "cannot create the folder" if below else "cannot write into the folder"
    with pytest.raises(SystemExit, match=rf"^--output {re.escape(str(out))}: {reason}: \w"):
        module.main(argv)


def test_a_result_that_cannot_be_written_is_one_line(runs, tmp_path, monkeypatch):
    """A write failing after the checks (disk full, the file made read-only meanwhile) names the file."""
    def refuse(picture, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("fastgan.inference.save_image", refuse)
    out = tmp_path / "g.png"
    with pytest.raises(SystemExit, match=rf"^--output: cannot write {re.escape(str(out))}: No space left on device$"):
        sample.main(["--checkpoint", ckpt(runs, "dcgan"), "--n", "2", "--output", str(out)])
    write_images(tmp_path / "in", 1)
    with pytest.raises(SystemExit, match=r"^--output: cannot write .*000\.png: No space left on device$"):
        translate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--input", str(tmp_path / "in"),
                        "--output", str(tmp_path / "out")])


def test_evaluate_checks_that_its_json_can_be_written_before_scoring(runs, monkeypatch, unwritable_folder):
    out = unwritable_folder / "scores.json"
    monkeypatch.setattr(evaluate, "pix2pix_scores", lambda *a: pytest.fail("scored before checking --json"))
    with pytest.raises(SystemExit, match=rf"^--json {re.escape(str(out))}: cannot write into its folder: \w"):
        evaluate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--data", "default", "--json", str(out)])


def test_translate_refuses_noise_models(runs, tmp_path):
    with pytest.raises(SystemExit, match="holds a dcgan generator; translate needs pix2pix"):
        translate.main(["--checkpoint", ckpt(runs, "dcgan"), "--input", str(tmp_path), "--output", str(tmp_path)])


def test_sample_grids(runs, tmp_path):
    assert sample.main(["--checkpoint", ckpt(runs, "dcgan"), "--n", "16", "--output", str(tmp_path / "g.png")]) == 0
    # 2 rows x 8 images of 32 px with 2 px gaps
    assert Image.open(tmp_path / "g.png").size == (8 * 34 + 2, 2 * 34 + 2)
    assert sample.main(["--checkpoint", ckpt(runs, "conditional"), "--output", str(tmp_path / "c.png")]) == 0
    assert Image.open(tmp_path / "c.png").size == (8 * 34 + 2, 2 * 34 + 2)  # one row per class
    assert sample.main(["--checkpoint", ckpt(runs, "conditional"), "--class", "1", "--n", "4",
                        "--output", str(tmp_path / "one.png")]) == 0
    first = np.asarray(Image.open(tmp_path / "g.png"))
    assert sample.main(["--checkpoint", ckpt(runs, "dcgan"), "--n", "16", "--output", str(tmp_path / "g2.png")]) == 0
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "g2.png"))), "same seed, same images"


@pytest.mark.parametrize("name, argv, message", [
    ("dcgan", ["--class", "1"], "--class needs a conditional checkpoint"),
    ("conditional", ["--class", "5"], r"--class 5 is outside \[0, 2\)"),
    ("pix2pix", [], "sample needs dcgan or conditional"),
])
def test_sample_errors(runs, tmp_path, name, argv, message):
    with pytest.raises(SystemExit, match=message):
        sample.main(["--checkpoint", ckpt(runs, name), "--output", str(tmp_path / "x.png"), *argv])


@pytest.mark.parametrize("output, message", [
    ("grid", r"--output .*grid: give an image file name whose extension names a format PIL writes"),
    ("grid.xyz", r"--output .*grid\.xyz: give an image file name whose extension names a format PIL writes"),
    ("grid.xbm", r"--output .*grid\.xbm: give an image file name whose extension names a format PIL writes"),
    ("folder.png", r"--output .*folder\.png is a folder; give an image file name"),
    ("file.png/grid.png", r"--output .*file\.png: cannot create the folder, a file stands in its path"),
])
def test_sample_checks_its_output_before_sampling(runs, tmp_path, monkeypatch, output, message):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file.png").write_text("x")
    monkeypatch.setattr(sample, "open_for_cli", lambda args: pytest.fail("sampled before checking --output"))
    with pytest.raises(SystemExit, match=message):
        sample.main(["--checkpoint", ckpt(runs, "dcgan"), "--output", str(tmp_path / output)])


def test_sample_writes_the_format_of_the_extension(runs, tmp_path):
    assert sample.main(["--checkpoint", ckpt(runs, "dcgan"), "--n", "8", "--output", str(tmp_path / "g.JPG")]) == 0
    assert Image.open(tmp_path / "g.JPG").format == "JPEG"


def test_evaluate_pix2pix_on_the_embedded_test_split(runs, tmp_path):
    out = tmp_path / "new" / "folder" / "scores.json"  # created
    assert evaluate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--data", "default", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["images"] == 64
    for key in ("l1", "psnr", "ssim", "sharpness_output", "sharpness_target"):
        assert np.isfinite(scores[key]), key
    assert 0 < scores["l1"] < 1 and scores["sharpness_target"] > 0


def test_evaluate_json_is_strict_json_when_a_score_is_infinite(runs, tmp_path, monkeypatch):
    """Identical images give PSNR +inf, which JSON cannot hold: it is written as "inf"."""
    out = tmp_path / "scores.json"
    monkeypatch.setattr(evaluate, "pix2pix_scores", lambda *a: {"images": 1, "psnr": float("inf"), "l1": 0.0})
    assert evaluate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--data", "default", "--json", str(out)]) == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    scores = json.loads(out.read_text(), parse_constant=refuse)
    assert scores["psnr"] == "inf" and float(scores["psnr"]) == float("inf") and scores["l1"] == 0.0


def test_evaluate_scores_in_the_direction_the_model_was_trained(runs, tmp_path):
    """A BtoA model (pix2pix facades) on an A|B folder is scored BtoA unless --direction says otherwise."""
    state = checkpoint.load(ckpt(runs, "pix2pix"))
    state["config"]["data"]["direction"] = "BtoA"
    checkpoint.save_atomic(state, tmp_path / "btoa.pt")
    write_aligned(tmp_path / "pairs", 2, size=64)  # random halves: the two directions score differently

    def l1(*direction):
        out = tmp_path / f"{'-'.join(direction) or 'default'}.json"
        assert evaluate.main(["--checkpoint", str(tmp_path / "btoa.pt"), "--data", str(tmp_path / "pairs"),
                              "--json", str(out), *direction]) == 0
        return json.loads(out.read_text())["l1"]

    assert l1() == l1("--direction", "BtoA") != l1("--direction", "AtoB")


def test_evaluate_noise_models_need_inception(runs, tmp_path):
    with pytest.raises(SystemExit, match="scored by FID/KID, which need --inception"):
        evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images")])
    with pytest.raises(SystemExit, match="--inception /no/such.pt: file not found; expected a TorchScript"):
        evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images"),
                       "--inception", "/no/such.pt"])


class ChannelMeans(torch.nn.Module):
    """A stand-in Inception network: 0..255 RGB in, each image's channel means out."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("inception") / "channel_means.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(ChannelMeans()).save(str(path))
    return str(path)


def test_evaluate_generates_the_same_images_at_any_batch_size(runs, tmp_path, inception):
    """The conditional model's labels were drawn between the batches' noise, so --batch-size changed which
    images were generated and with them FID/KID."""
    def scores(batch_size):
        out = tmp_path / f"{batch_size}.json"
        assert evaluate.main(["--checkpoint", ckpt(runs, "conditional"), "--data", str(runs / "classes"),
                              "--num-generated", "12",
                              "--batch-size", str(batch_size), "--inception", inception, "--device", "cpu",
                              "--json", str(out)]) == 0
        return json.loads(out.read_text())

    by_batch = [scores(batch_size) for batch_size in (12, 5, 4)]
    for key in ("fid", "kid_mean", "kid_std"):
        assert by_batch[1][key] == pytest.approx(by_batch[0][key], rel=1e-6), key
        assert by_batch[2][key] == pytest.approx(by_batch[0][key], rel=1e-6), key


def test_evaluate_prints_small_scores_with_their_significant_digits(runs, tmp_path, inception, capsys):
    """KID is typically 1e-4 to 1e-2 and its spread smaller: a fixed four decimals printed 0.0000."""
    out = tmp_path / "scores.json"
    assert evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images"), "--num-generated", "8",
                          "--inception", inception, "--device", "cpu", "--json", str(out)]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines() if len(line.split()) == 2)
    scores = json.loads(out.read_text())
    assert 0 < abs(scores["kid_std"]) < 1e-3  # small, as for real images
    for key in ("fid", "kid_mean", "kid_std"):
        assert float(printed[key]) == pytest.approx(scores[key], rel=1e-5), key


def test_each_generated_images_noise_does_not_depend_on_the_batches():
    """torch.randn(n, 100) is not the first n rows of torch.randn(m, 100): noise drawn per batch changed with
    --batch-size even without labels."""
    def noise_of_images(batch_size):
        batches = evaluate.generated_images(lambda z: z.clamp(-1, 1), lambda g: (torch.randn(1, 100, generator=g),),
                                            10, batch_size, "cpu")
        return torch.cat(list(batches))

    assert torch.equal(noise_of_images(3), noise_of_images(10))


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint: checkpoint not found: .*nothing.pt"):
        sample.main(["--checkpoint", str(tmp_path / "nothing.pt"), "--output", str(tmp_path / "x.png")])


@pytest.fixture(scope="module")
def torn(runs, tmp_path_factory) -> str:
    """The first half of a real checkpoint, as a crash or a full disk leaves it."""
    path = tmp_path_factory.mktemp("torn") / "torn.pt"
    data = (runs / "dcgan" / "ckpt_00000002.pt").read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return str(path)


def test_the_loader_names_a_torn_or_foreign_file(torn, tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match=f"{torn} is not a readable checkpoint \\(truncated, damaged, "
                                                         f"or not written by torch.save\\): RuntimeError: "
                                                         f"PytorchStreamReader failed reading zip archive"):
        checkpoint.load(torn)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pt is not a readable checkpoint .*: KeyError: \d+$"):
        checkpoint.load(tmp_path / "text.pt")  # a ValueError, as the trainer's resume expects


@pytest.mark.parametrize("tool, argv", [
    (sample.main, ["--output", "x.png"]),
    (translate.main, ["--input", ".", "--output", "x"]),
    (evaluate.main, ["--data", "default"]),
])
def test_a_torn_checkpoint_is_one_error_line(torn, tool, argv):
    with pytest.raises(SystemExit, match=f"^--checkpoint: {torn} is not a readable checkpoint .*: RuntimeError: "
                                         f"PytorchStreamReader failed reading zip archive: failed finding central "
                                         f"directory$"):
        tool(["--checkpoint", torn, *argv])


def test_command_line_errors_are_one_prefixed_line_with_status_2(torn, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastgan.translate", "--checkpoint", torn, "--input", str(tmp_path),
                           "--output", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"fastgan.translate: error: --checkpoint: {torn} is not a "
                                                   f"readable checkpoint")


@pytest.mark.parametrize("name, argv, message", [
    ("pix2pix", ["--size", "50"], r"--size 50 must be a multiple of 32 \(2\^num_downs of this U-Net\)"),
    ("pix2pix", ["--size", "0"], "--size must be >= 1, got 0"),
    ("pix2pix", ["--data", "/no/such/folder"], "--data: aligned image folder /no/such/folder does not exist"),
    ("pix2pix", ["--data", "IMAGES"], r"--data: aligned image .*000\.png is 40x40; an A\|B image holds two square "
                                      r"halves"),
    ("pix2pix", ["--data", "fashion_mnist"], r"--data fashion_mnist: a pix2pix model is scored on aligned A\|B image "
                                             r"pairs; give a folder of them or 'default' \(write ./fashion_mnist"),
    ("pix2pix", ["--direction", "BtoA"], r"--direction applies to pix2pix on a folder of A\|B images; leave it out "
                                         r"for the embedded set \(edges to photos\)"),
    ("dcgan", ["--data", "IMAGES", "--direction", "AtoB"], r"--direction applies to pix2pix on a folder of A\|B "
                                                           r"images; leave it out for a dcgan model"),
    ("dcgan", ["--data", "IMAGES", "--split", "val"], r"--split picks a split of the embedded photos \(--data "
                                                      r"default\); leave it out for --data .*images"),
    ("dcgan", ["--data", "IMAGES", "--fashion-mnist-root", "."], "--fashion-mnist-root goes with --data "
                                                                 "fashion_mnist; leave it out for --data"),
    ("dcgan", ["--data", "IMAGES", "--inception", "BAD"], r"--inception: .*bad\.pt is not a TorchScript module"),
    ("dcgan", ["--data", "IMAGES", "--size", "64"], "--size 64: a dcgan model generates 32-pixel images only; leave "
                                                    "--size out"),
    ("conditional", ["--data", "IMAGES", "--size", "16"], "--size 16: a conditional model generates 32-pixel images "
                                                          "only"),
    ("pix2pix", ["--json", "FOLDER"], r"--json .* is a folder; give a file name"),
])
def test_evaluate_refuses_bad_arguments(runs, tmp_path, name, argv, message):
    (tmp_path / "bad.pt").write_text("not an Inception network")
    places = {"IMAGES": str(runs / "images"), "BAD": str(tmp_path / "bad.pt"), "FOLDER": str(tmp_path)}
    argv = [places.get(a, a) for a in argv]
    data = [] if "--data" in argv else ["--data", "default"]
    with pytest.raises(SystemExit, match=message):
        evaluate.main(["--checkpoint", ckpt(runs, name), *data, *argv])
