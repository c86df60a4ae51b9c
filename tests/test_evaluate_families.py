"""fastgan.evaluate for LAPGAN (level checkpoints joined into one pyramid) and GAN-CLS (captions of --data):
the weight-free scores against independent computations, FID/KID through a stand-in Inception file, and the
error paths."""
from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan import checkpoint
from fastgan.data import CaptionedImageFolder, ImageFolderDataset
from fastgan.data.idx import FASHION_MNIST_ROOT
from fastgan.evaluate import main as evaluate
from fastgan.families.lapgan import load_pyramid
from fastgan.metrics import FrechetAndKernelDistance
from fastgan.models import build_model
from fastgan.pyramid import laplacian_pyramid
from fastgan.train import main as train
from train_helpers import write_idx, write_images

COMMON = ["--model.ngf", "8", "--model.ndf", "8", "--model.nz", "16", "--train.batch_size", "4",
          "--train.log_every", "1", "--train.sample_every", "1000", "--train.progress", "false",
          "--optim.schedule", "constant", "--train.max_steps", "2"]
# 16 px in 3 levels (4 -> 8 -> 16).
LAPGAN = ["--model.family", "lapgan", "--data.dataset", "folder", "--data.crop_size", "16", "--model.levels", "3",
          *COMMON]
GANCLS = ["--model.family", "gancls", "--data.dataset", "folder", "--data.crop_size", "32", "--data.load_size", "32",
          "--model.text_dim", "16", "--model.text_embed_dim", "8", "--model.caption_len", "64", *COMMON]
CAPTIONS = ["a red square", "a blue circle\na round blue shape", "green stripes", "a yellow star",
            "a black cat", "a white rocket"]
LEVELS = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three LAPGAN levels and one GAN-CLS model, each trained 2 steps on random images."""
    root = tmp_path_factory.mktemp("runs")
    write_images(root / "photos", 8, size=20)
    for level in range(LEVELS):
        assert train([*LAPGAN, "--data.root", str(root / "photos"), "--model.level", str(level),
                      "--train.out_dir", str(root / f"L{level}")]) == 0
    write_images(root / "captioned", len(CAPTIONS), size=40, seed=1)
    for index, caption in enumerate(CAPTIONS):
        (root / "captioned" / f"{index:03d}.txt").write_text(caption + "\n")
    assert train([*GANCLS, "--data.root", str(root / "captioned"), "--train.out_dir", str(root / "gancls")]) == 0
    return root


def levels(runs) -> list[str]:
    return [str(runs / f"L{level}" / "ckpt_00000002.pt") for level in range(LEVELS)]


def gancls(runs) -> str:
    return str(runs / "gancls" / "ckpt_00000002.pt")


def run(argv, tmp_path) -> dict:
    out = tmp_path / "scores.json"
    assert evaluate([*argv, "--device", "cpu", "--json", str(out)]) == 0
    return json.loads(out.read_text())


class StandInInception(nn.Module):
    """A small random TorchScript network in place of Inception: 0..255 RGB in, 6 pool features out."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.tanh(self.conv((img - 128) / 128)), 1).flatten(1)


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "stand_in.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StandInInception().eval()).save(str(path))
    return str(path)


def reference_fid(inception: str, real: torch.Tensor, generated: torch.Tensor) -> dict:
    metric = FrechetAndKernelDistance(inception)
    metric.update(real, real=True)
    metric.update(generated, real=False)
    return metric.compute()


# ----------------------------------------------------------------------------- LAPGAN

def pyramid_samples(runs, counts: list[int]) -> torch.Tensor:
    """What evaluate generates: batches of the given sizes from one noise stream seeded 0, clamped."""
    G, g = load_pyramid(levels(runs), torch.device("cpu")), torch.Generator().manual_seed(0)
    with torch.no_grad():
        return torch.cat([G(torch.randn(n, G.latent_size, generator=g)) for n in counts]).clamp(-1, 1)


def folder_images(folder, size: int) -> torch.Tensor:
    dataset = ImageFolderDataset(folder, image_size=size)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def band_scores(images: torch.Tensor, name: str) -> dict:
    bands = laplacian_pyramid(images.double(), LEVELS)
    scores = {f"band_std_{k}_{name}": float(band.std(unbiased=False)) for k, band in enumerate(bands)}
    scores[f"coarse_spread_{name}"] = float(bands[0].std(0, unbiased=False).mean())
    return scores


def test_lapgan_band_spreads_need_no_inception(runs, tmp_path, capsys):
    scores = run([*(f"--checkpoint={c}" for c in levels(runs)), "--data", str(runs / "photos"),
                  "--num-generated", "10", "--batch-size", "4"], tmp_path)
    assert "FID/KID skipped" in capsys.readouterr().out
    expected = {**band_scores(folder_images(runs / "photos", 16), "real"),
                **band_scores(pyramid_samples(runs, [4, 4, 2]), "generated")}
    assert scores.keys() == {"checkpoint", "data", "images", "real_images", *expected}
    assert (scores["checkpoint"], scores["data"], scores["images"], scores["real_images"]) == (
        levels(runs), str(runs / "photos"), 10, 8)
    for key, value in expected.items():
        assert math.isfinite(scores[key]) and scores[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert scores["band_std_2_real"] > 0.1  # random pixels: most of their energy is in the finest band


def test_lapgan_on_the_embedded_photos_in_any_level_order(runs, tmp_path):
    argv = ["--data", "default", "--split", "test", "--num-generated", "6"]
    forward = run([*(f"--checkpoint={c}" for c in levels(runs)), *argv], tmp_path)
    backward = run([*(f"--checkpoint={c}" for c in reversed(levels(runs))), *argv], tmp_path)
    assert forward["real_images"] == 64  # the 64 held-out crops of the test split
    assert {k: v for k, v in forward.items() if k != "checkpoint"} == \
        {k: v for k, v in backward.items() if k != "checkpoint"}
    assert all(math.isfinite(v) for k, v in forward.items() if k.startswith(("band_std", "coarse_spread")))


def test_lapgan_fid_and_kid_through_a_local_inception_file(runs, tmp_path, inception):
    scores = run([*(f"--checkpoint={c}" for c in levels(runs)), "--data", str(runs / "photos"),
                  "--num-generated", "12", "--batch-size", "12", "--inception", inception], tmp_path)
    expected = reference_fid(inception, folder_images(runs / "photos", 16), pyramid_samples(runs, [12]))
    assert (scores["num_real"], scores["num_generated"], scores["kid_subset_size"]) == (8, 12, 8)
    for key in ("fid", "kid_mean", "kid_std"):
        assert math.isfinite(scores[key]) and scores[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9), key
    assert "band_std_0_generated" in scores


# ----------------------------------------------------------------------------- GAN-CLS

def captioned(runs) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = CaptionedImageFolder(runs / "captioned", 32, caption_len=64)
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s["image"] for s in samples]), torch.stack([s["tokens"] for s in samples])


def networks(runs):
    """G in eval mode, as sampling uses it; D in training mode (batch statistics), as evaluate scores with it."""
    state = checkpoint.load(gancls(runs))
    nets = []
    for role in ("G", "D"):
        net = build_model("gancls", role, **state["model_args"][role])
        net.load_state_dict(state["models"][role])
        nets.append(net.train(role == "D"))
    return nets


def test_gancls_matching_scores_of_its_own_discriminator(runs, tmp_path, capsys):
    scores = run(["--checkpoint", gancls(runs), "--data", str(runs / "captioned"), "--batch-size", "4"], tmp_path)
    assert "FID/KID skipped" in capsys.readouterr().out
    images, tokens = captioned(runs)
    G, D = networks(runs)
    g = torch.Generator().manual_seed(0)
    right, mismatched, fake = [], [], []
    with torch.no_grad():
        for batch in (slice(0, 4), slice(4, 6)):  # each D call sees one batch of one kind, as in training
            x, t = images[batch], tokens[batch]
            right.append(D(x, t))
            mismatched.append(D(x, t.roll(1, 0)))  # the wrong caption: the batch neighbour's
            fake.append(D(G(torch.randn(len(t), G.nz, generator=g), t), t))
    right, mismatched, fake = (torch.cat(v).double() for v in (right, mismatched, fake))
    expected = {"images": 6, "real_images": 6, "wrong_pairs": 6, "d_real_right": right.mean().item(),
                "d_real_wrong": mismatched.mean().item(),
                "d_match_gap": right.mean().item() - mismatched.mean().item(),
                "d_match_accuracy": (right > mismatched).double().mean().item(), "d_fake_right": fake.mean().item()}
    assert scores.keys() == {"checkpoint", "data", *expected}
    assert scores["checkpoint"] == gancls(runs)
    for key, value in expected.items():
        assert math.isfinite(scores[key]) and scores[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_gancls_fid_and_kid_cycle_the_captions_of_data(runs, tmp_path, inception):
    scores = run(["--checkpoint", gancls(runs), "--data", str(runs / "captioned"), "--num-generated", "9",
                  "--batch-size", "9", "--inception", inception], tmp_path)
    images, tokens = captioned(runs)
    G, _ = networks(runs)
    with torch.no_grad():  # 9 images: the 6 captions, then the first 3 again
        generated = G(torch.randn(9, G.nz, generator=torch.Generator().manual_seed(0)), tokens[torch.arange(9) % 6])
    expected = reference_fid(inception, images, generated)
    assert (scores["images"], scores["num_real"], scores["num_generated"], scores["kid_subset_size"]) == (9, 6, 9, 6)
    for key in ("fid", "kid_mean", "kid_std"):
        assert math.isfinite(scores[key]) and scores[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9), key


def test_gancls_on_the_shipped_captioned_photos(runs, tmp_path):
    scores = run(["--checkpoint", gancls(runs), "--data", "default", "--num-generated", "8", "--batch-size", "64"],
                 tmp_path)
    assert (scores["images"], scores["real_images"]) == (8, 512)
    assert 0 < scores["wrong_pairs"] < 512  # neighbours cropped from the same photo are left out
    assert 0 <= scores["d_match_accuracy"] <= 1
    assert all(math.isfinite(scores[k]) for k in ("d_real_right", "d_real_wrong", "d_match_gap", "d_fake_right"))


# ----------------------------------------------------------------------------- errors

def test_pyramid_with_a_missing_level_is_refused(runs):
    first, _, last = levels(runs)
    with pytest.raises(SystemExit, match=re.escape(f"the pyramid has 3 levels; no --checkpoint holds level(s) 1 "
                                                   f"(given: {first}, {last})")):
        evaluate(["--checkpoint", first, "--checkpoint", last, "--data", str(runs / "photos")])
    with pytest.raises(SystemExit, match=r"no --checkpoint holds level\(s\) 0, 1"):
        evaluate(["--checkpoint", last, "--data", str(runs / "photos")])


@pytest.mark.parametrize("family", ["lapgan", "gancls"])
def test_a_missing_inception_file_is_named(runs, family):
    checkpoints = levels(runs) if family == "lapgan" else [gancls(runs)]
    data = runs / ("photos" if family == "lapgan" else "captioned")
    with pytest.raises(SystemExit, match="--inception /no/such.pt: file not found; expected a TorchScript "
                                         "Inception-v3 feature extractor"):
        evaluate([*(f"--checkpoint={c}" for c in checkpoints), "--data", str(data), "--inception", "/no/such.pt"])


def test_several_checkpoints_only_for_a_lapgan_pyramid(runs):
    with pytest.raises(SystemExit, match=re.escape(f"--checkpoint was given 2 times, but {gancls(runs)} holds a "
                                                   f"gancls model; only a lapgan pyramid is evaluated from several "
                                                   f"checkpoints (one per level)")):
        evaluate(["--checkpoint", gancls(runs), "--checkpoint", levels(runs)[0], "--data", "default"])


@pytest.mark.parametrize("which, argv, message", [
    ("lapgan", ["--data", "PHOTOS", "--size", "32"], "--size 32: a lapgan model generates 16-pixel images only"),
    ("lapgan", ["--data", "/no/such/folder"], "--data: image folder /no/such/folder does not exist"),
    ("lapgan", ["--data", "fashion_mnist"], "--data fashion_mnist has 1-channel images, but this lapgan model "
                                            "makes 3-channel ones"),
    ("lapgan", ["--data", "PHOTOS", "--num-generated", "0"], "--num-generated must be >= 1, got 0"),
    ("gancls", ["--data", "CAPTIONED", "--batch-size", "1"], "--batch-size must be >= 2 for gancls"),
    ("gancls", ["--data", "default", "--split", "test"], "--split picks a split of the embedded photos; gancls "
                                                         "models train on all nine of them"),
    ("gancls", ["--data", "PHOTOS"], r"--data: caption file\(s\) not found: .*000\.txt"),
    ("gancls", ["--data", "fashion_mnist"], "--data fashion_mnist has 1-channel images, but this gancls model "
                                            "makes 3-channel ones"),
])
def test_bad_arguments_are_named(runs, which, argv, message):
    checkpoints = levels(runs) if which == "lapgan" else [gancls(runs)]
    folders = {"PHOTOS": str(runs / "photos"), "CAPTIONED": str(runs / "captioned")}
    with pytest.raises(SystemExit, match=message):
        evaluate([*(f"--checkpoint={c}" for c in checkpoints), *(folders.get(a, a) for a in argv)])


def test_one_captioned_picture_gives_no_wrong_caption(runs, tmp_path):
    write_images(tmp_path / "one", 1, size=40)
    (tmp_path / "one" / "000.txt").write_text("a red square\na small red square\n")
    with pytest.raises(SystemExit, match="no two neighbouring images have captions of different pictures"):
        evaluate(["--checkpoint", gancls(runs), "--data", str(tmp_path / "one"), "--device", "cpu"])


@pytest.fixture(scope="module")
def gray_gancls(runs) -> str:
    """A GAN-CLS model of 1-channel images, which --data fashion_mnist needs."""
    assert train([*GANCLS, "--model.channels", "1", "--data.root", str(runs / "captioned"),
                  "--train.out_dir", str(runs / "gancls_gray")]) == 0
    return str(runs / "gancls_gray" / "ckpt_00000002.pt")


def test_fashion_mnist_from_another_folder(gray_gancls, tmp_path):
    root = tmp_path / "fashion"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte", np.random.default_rng(0).integers(0, 256, (6, 28, 28), np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(6, dtype=np.uint8))  # six classes: every neighbour is a wrong caption
    scores = run(["--checkpoint", gray_gancls, "--data", "fashion_mnist", "--fashion-mnist-root", str(root),
                  "--batch-size", "3"], tmp_path)
    assert (scores["data"], scores["images"], scores["real_images"], scores["wrong_pairs"]) == (
        "fashion_mnist", 6, 6, 6)
    missing = tmp_path / "empty"
    with pytest.raises(SystemExit, match=re.escape(
            f"--data fashion_mnist: t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] not found in "
            f"{missing}; install Debian's dataset-fashion-mnist (it puts them in {FASHION_MNIST_ROOT}) or pass "
            f"--fashion-mnist-root with the folder that holds them")):
        evaluate(["--checkpoint", gray_gancls, "--data", "fashion_mnist", "--fashion-mnist-root", str(missing)])


def test_help_describes_the_lapgan_and_gancls_paths(capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("lapgan: repeat it, one per pyramid level (any order)",
                   "gancls: a captioned image folder",
                   "gancls: default one per real image of --data, from its caption",
                   "LAPGAN: one --checkpoint per pyramid level"):
        assert phrase in text, phrase
