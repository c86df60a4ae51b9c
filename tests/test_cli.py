"""The inference tools on small trained checkpoints: translate, sample, evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fastgan import evaluate, sample, translate
from fastgan.train import main as train
from train_helpers import TINY_PIX2PIX, tiny_dcgan, write_images


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
    assert "skipped 1 unreadable file" in capsys.readouterr().out


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
    (["--input", "/nonexistent/x"], "no such file or folder"),
])
def test_translate_errors(runs, tmp_path, argv, message):
    base = {"--checkpoint": ckpt(runs, "pix2pix"), "--input": str(tmp_path), "--output": str(tmp_path / "o")}
    write_images(tmp_path, 1)
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit, match=message):
        translate.main([x for kv in base.items() for x in kv])


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


def test_evaluate_pix2pix_on_the_embedded_test_split(runs, tmp_path):
    out = tmp_path / "scores.json"
    assert evaluate.main(["--checkpoint", ckpt(runs, "pix2pix"), "--data", "default", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert scores["images"] == 64
    for key in ("l1", "psnr", "ssim", "sharpness_output", "sharpness_target"):
        assert np.isfinite(scores[key]), key
    assert 0 < scores["l1"] < 1 and scores["sharpness_target"] > 0


def test_evaluate_noise_models_need_inception(runs, tmp_path):
    with pytest.raises(SystemExit, match="scored by FID/KID, which need --inception"):
        evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images")])
    with pytest.raises(SystemExit, match="--inception /no/such.pt: file not found; expected a TorchScript"):
        evaluate.main(["--checkpoint", ckpt(runs, "dcgan"), "--data", str(runs / "images"),
                       "--inception", "/no/such.pt"])


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--checkpoint: checkpoint not found: .*nothing.pt"):
        sample.main(["--checkpoint", str(tmp_path / "nothing.pt"), "--output", str(tmp_path / "x.png")])
