"""LAPGAN: the Laplacian pyramid, the per-level networks, level datasets, per-level training and resume,
coarse-to-fine sampling from level checkpoints, and configuration errors."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan import checkpoint, config
from fastgan.data import ImageFolderDataset
from fastgan.data.lapgan import PyramidLevelDataset
from fastgan.families.lapgan import load_pyramid
from fastgan.models.lapgan import (BandDiscriminator, BandGenerator, BaseDiscriminator, BaseGenerator,
                                   LaplacianPyramidGenerator)
from fastgan.pyramid import (check_levels, downsample, gaussian_blur, gaussian_pyramid, laplacian_pyramid,
                             reconstruct, upsample)
from fastgan.sample import main as sample_main
from fastgan.train import main as train_main
from fastgan.visualize import grid
from train_helpers import final_weights, loss_trace, write_images

ROOT = Path(__file__).resolve().parents[1]
# 16 px in 3 levels (4 -> 8 -> 16) with narrow convnets: a step takes a few milliseconds.
TINY = ["--model.family", "lapgan", "--data.dataset", "folder", "--data.crop_size", "16", "--model.levels", "3",
        "--model.ngf", "8", "--model.ndf", "8", "--model.nz", "16", "--train.batch_size", "4",
        "--train.log_every", "1", "--train.sample_every", "1000", "--train.progress", "false",
        "--optim.schedule", "constant"]


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train(out_dir, root, level: int, *args) -> int:
    return train_main([*TINY, "--data.root", str(root), "--model.level", str(level), "--train.out_dir", str(out_dir),
                       *args])


# ----------------------------------------------------------------------------- pyramid

@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_reconstruction_from_the_laplacian_pyramid_is_exact(levels):
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    pyramid = laplacian_pyramid(image, levels)
    assert [tuple(p.shape[-2:]) for p in pyramid] == [(32 >> (levels - 1 - k),) * 2 for k in range(levels)]
    assert (reconstruct(pyramid) - image).abs().max().item() < 1e-15  # float64 rounding only
    single = image.float()
    assert (reconstruct(laplacian_pyramid(single, levels)) - single).abs().max().item() < 1e-6


def test_pyramid_filters_and_levels():
    delta = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    delta[..., 4, 4] = 1
    taps = torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64) / 16
    assert torch.equal(gaussian_blur(delta)[0, 0, 2:7, 2:7], torch.outer(taps, taps))
    flat = torch.full((2, 3, 16, 16), 0.25, dtype=torch.float64)  # dyadic: every filter sum is exact
    assert torch.equal(downsample(flat), flat[..., :8, :8]) and torch.equal(upsample(flat[..., :8, :8]), flat)
    bands = laplacian_pyramid(flat, 3)
    assert torch.equal(bands[0], flat[..., :4, :4]) and all(torch.count_nonzero(b) == 0 for b in bands[1:])
    image = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    gaussian = gaussian_pyramid(image, 3)
    assert torch.equal(gaussian[2], image) and torch.equal(gaussian[1], gaussian_blur(image)[..., ::2, ::2])
    assert torch.equal(laplacian_pyramid(image, 3)[2], image - upsample(gaussian[1]))
    assert check_levels(32, 4) == 4
    with pytest.raises(ValueError, match="a 5-level pyramid needs a side divisible by 16 whose coarsest level is "
                                         "at least 4 pixels; got 32"):
        laplacian_pyramid(torch.zeros(1, 3, 32, 32), 5)
    with pytest.raises(ValueError, match="downsample needs even sides; got 6x7"):
        downsample(torch.zeros(1, 1, 6, 7))
    with pytest.raises(ValueError, match="pyramid level 1 is 10x10; after a 4x4 level it must be twice that"):
        reconstruct([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 10, 10)])


# ----------------------------------------------------------------------------- networks

def test_level_networks_shapes_and_parameter_counts():
    # Level 0, the paper's MLPs at 8x8x3: 100 -> 1200 -> 1200 -> 192 and 192 -> 600 -> 600 -> 1.
    assert count(BaseGenerator()) == (100 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 192 + 192) == 1_792_992
    assert count(BaseDiscriminator()) == (192 * 600 + 600) + (600 * 600 + 600) + (600 + 1) == 477_001
    # A 16x16 level at 128 channels, 5x5 kernels, no conv bias before BatchNorm:
    # G: (3 + 1 noise) -> 128 -> 128 -> 3; D: (3 band + 3 coarse) -> 128 -> 256 (stride 2 each) -> Linear(256*4*4).
    assert count(BandGenerator(image_size=16)) == 4 * 128 * 25 + 256 + 128 * 128 * 25 + 256 + 128 * 3 * 25 + 3
    assert count(BandGenerator(image_size=16)) == 432_515
    assert count(BandDiscriminator(image_size=16)) == 6 * 128 * 25 + 128 + 128 * 256 * 25 + 512 + 256 * 16 + 1
    assert count(BandDiscriminator(image_size=16)) == 843_137
    # Class-conditional: one-hot inputs to the MLPs; one more input plane (5x5 weights + a 16x16 map per class).
    assert count(BaseGenerator(num_classes=10)) - count(BaseGenerator()) == 10 * 1200
    assert count(BaseDiscriminator(num_classes=10)) - count(BaseDiscriminator()) == 10 * 600
    for cls, width in ((BandGenerator, 128), (BandDiscriminator, 128)):
        assert count(cls(image_size=16, num_classes=10)) - count(cls(image_size=16)) == width * 25 + 10 * 256

    labels = torch.tensor([0, 3, 9])
    assert BaseGenerator(nz=16, image_size=4, num_classes=10)(torch.zeros(3, 16), labels).shape == (3, 3, 4, 4)
    assert BaseDiscriminator(channels=1, image_size=8)(torch.zeros(3, 1, 8, 8)).shape == (3,)
    G, D = BandGenerator(channels=1, image_size=32, ngf=8), BandDiscriminator(channels=1, image_size=32, ndf=8)
    band = G(torch.zeros(3, 1, 32, 32), torch.zeros(3, 1, 32, 32))
    assert band.shape == (3, 1, 32, 32) and D(band, torch.zeros(3, 1, 32, 32)).shape == (3,)
    with pytest.raises(ValueError, match=r"coarse must have shape \[N, 1, 32, 32\]; got \(3, 1, 16, 16\)"):
        G(torch.zeros(3, 1, 32, 32), torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match=r"class-conditional \(10 classes\) and needs labels"):
        BaseGenerator(num_classes=10)(torch.zeros(3, 100))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\); got 10"):
        BaseDiscriminator(num_classes=10)(torch.zeros(2, 3, 8, 8), torch.tensor([0, 10]))


def test_fused_and_stock_band_networks_are_interchangeable():
    torch.manual_seed(0)
    for cls in (BandGenerator, BandDiscriminator):
        stock, fused = cls(image_size=16, fused=False), cls(image_size=16, fused=True)
        assert stock.state_dict().keys() == fused.state_dict().keys()
        assert any(type(m).__name__ == "BatchNormLeakyReLU2d" for m in fused.modules())
        fused.load_state_dict(stock.state_dict())
        x, coarse = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
        x = x[:, :1] if cls is BandGenerator else x
        torch.testing.assert_close(fused(x, coarse), stock(x, coarse), atol=1e-5, rtol=1e-5)


def test_pyramid_generator_samples_coarse_to_fine():
    torch.manual_seed(1)
    levels = [BaseGenerator(nz=16, image_size=4, num_classes=3),
              BandGenerator(image_size=8, ngf=8, num_classes=3), BandGenerator(image_size=16, ngf=8, num_classes=3)]
    pyramid = LaplacianPyramidGenerator(levels).eval()
    assert pyramid.latent_size == 16 + 8 * 8 + 16 * 16
    z, labels = torch.randn(2, pyramid.latent_size), torch.tensor([2, 0])
    with torch.no_grad():
        images = pyramid.pyramid(z, labels)
        i0 = levels[0](z[:, :16], labels)
        b1 = levels[1](z[:, 16:80].reshape(2, 1, 8, 8), upsample(i0), labels)
        i1 = upsample(i0) + b1
        b2 = levels[2](z[:, 80:].reshape(2, 1, 16, 16), upsample(i1), labels)
        assert torch.equal(images[0], i0) and torch.equal(images[1], i1)
        torch.testing.assert_close(pyramid(z, labels), reconstruct([i0, b1, b2]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"level 2 generates \(3, 8, 8\) images \(3 classes\); after level 1's "
                                         r"\(3, 8, 8\) it must generate \(3, 16, 16\) \(3 classes\)"):
        LaplacianPyramidGenerator(levels[:2] + [levels[1]])


# ----------------------------------------------------------------------------- data

def test_level_dataset_holds_the_real_pyramid(tmp_path):
    write_images(tmp_path, 2, size=16)
    base = ImageFolderDataset(tmp_path, image_size=16)
    full = base[1]["image"][None]
    gaussian = gaussian_pyramid(full, 3)
    top = PyramidLevelDataset(base, level=2, levels=3)[1]
    assert torch.equal(top["image"], full[0]) and torch.equal(top["coarse"], upsample(gaussian[1])[0])
    assert torch.equal(top["image"] - top["coarse"], laplacian_pyramid(full, 3)[2][0])
    bottom = PyramidLevelDataset(base, level=0, levels=3)[1]
    assert bottom.keys() == {"image"} and torch.equal(bottom["image"], gaussian[0][0])
    with pytest.raises(ValueError, match="level must be in \\[0, 3\\) for a 3-level pyramid; got 3"):
        PyramidLevelDataset(base, level=3, levels=3)


# ----------------------------------------------------------------------------- training and sampling

@pytest.fixture(scope="module")
def pyramid_runs(tmp_path_factory):
    """Three levels trained separately for 3 steps each on one folder of random 16 px images."""
    tmp = tmp_path_factory.mktemp("lapgan")
    write_images(tmp / "photos", 8, size=20)
    for level in range(3):
        assert train(tmp / f"L{level}", tmp / "photos", level, "--train.max_steps", "3") == 0
    return tmp


@pytest.mark.parametrize("level", [0, 1, 2])
def test_each_level_trains_with_finite_changing_losses(pyramid_runs, level):
    run = pyramid_runs / f"L{level}"
    for key in ("loss_D", "loss_G"):
        values = loss_trace(run, key)
        assert len(values) == 3 and all(map(math.isfinite, values)) and len(set(values)) == 3, (key, values)
    state = checkpoint.load(run / "ckpt_00000003.pt")
    assert set(state["models"]) == {"G", "D"} and state["model_args"]["G"]["level"] == level
    assert state["model_args"]["G"]["image_size"] == 4 << level
    assert (run / "samples" / "step_00000003.png").is_file()


def test_class_conditional_level_trains(tmp_path, capsys):
    for label in ("a", "b"):
        write_images(tmp_path / "classes" / label, 3, size=16, seed=len(label) + ord(label))
    assert train_main([*TINY, "--data.dataset", "classes", "--data.root", str(tmp_path / "classes"),
                       "--model.class_conditional", "true", "--model.num_classes", "2", "--model.level", "1",
                       "--train.out_dir", str(tmp_path / "run"), "--train.max_steps", "2"]) == 0
    assert "lapgan level 1 of 3 (4->16): the 8x8 band given the upsampled 4x4 level, conditioned on 2 classes" \
        in capsys.readouterr().out
    values = loss_trace(tmp_path / "run", "loss_G")
    assert len(values) == 2 and all(map(math.isfinite, values)) and values[0] != values[1]
    assert checkpoint.load(tmp_path / "run" / "ckpt_00000002.pt")["model_args"]["G"]["num_classes"] == 2


def test_one_level_resumes_exactly(pyramid_runs, tmp_path, capsys):
    photos = pyramid_runs / "photos"
    assert train(tmp_path / "straight", photos, 1, "--train.max_steps", "4") == 0
    assert train(tmp_path / "split", photos, 1, "--train.max_steps", "2") == 0
    assert train(tmp_path / "split", photos, 1, "--train.max_steps", "4", "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert train(tmp_path / "split", photos, 2, "--train.max_steps", "6", "--train.resume", "auto") == 2
    assert re.match(r"fastgan\.train: error: --train\.resume: .* holds lapgan networks .*'level': 1.* which differ "
                    r"from this config's lapgan", capsys.readouterr().err)


def test_sample_cli_builds_full_resolution_images_from_level_checkpoints(pyramid_runs, tmp_path):
    ckpts = [str(pyramid_runs / f"L{k}" / "ckpt_00000003.pt") for k in range(3)]
    common = ["--n", "16", "--per-row", "8", "--seed", "3", "--device", "cpu"]
    assert sample_main([f"--checkpoint={c}" for c in ckpts] + common + ["--output", str(tmp_path / "a.png")]) == 0
    picture = np.asarray(Image.open(tmp_path / "a.png"))
    assert picture.shape == (2 * (16 + 2) + 2, 8 * (16 + 2) + 2, 3)  # two rows of eight 16x16 images
    pyramid = load_pyramid(ckpts, torch.device("cpu"))
    z = torch.randn(16, pyramid.latent_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = grid(list(pyramid(z).split(8)))
    assert np.array_equal(picture, expected)
    reordered = [f"--checkpoint={c}" for c in reversed(ckpts)]
    assert sample_main(reordered + common + ["--output", str(tmp_path / "b.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), picture)


def test_sample_refuses_checkpoints_that_are_not_one_pyramid(pyramid_runs, tmp_path):
    ckpts = [str(pyramid_runs / f"L{k}" / "ckpt_00000003.pt") for k in range(3)]
    out = ["--output", str(tmp_path / "x.png"), "--device", "cpu"]

    def sample(*paths):
        return sample_main([f"--checkpoint={p}" for p in paths] + out)

    with pytest.raises(SystemExit, match=r"the pyramid has 3 levels; no --checkpoint holds level\(s\) 1 \(given: "
                                         f"{re.escape(ckpts[0])}, {re.escape(ckpts[2])}\\)"):
        sample(ckpts[0], ckpts[2])
    with pytest.raises(SystemExit, match=f"--checkpoint {re.escape(ckpts[1])} and {re.escape(ckpts[1])} both "
                                         f"hold level 1"):
        sample(ckpts[0], ckpts[1], ckpts[1], ckpts[2])
    other = checkpoint.load(ckpts[2])
    other["config"]["data"]["crop_size"] = 32
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match=f"--checkpoint {tmp_path / 'other.pt'} belongs to another pyramid than "
                                         f"{re.escape(ckpts[0])}: data.crop_size 16 vs 32"):
        sample(ckpts[0], ckpts[1], tmp_path / "other.pt")
    other["family"] = "dcgan"
    torch.save(other, tmp_path / "dcgan.pt")
    with pytest.raises(SystemExit, match="dcgan.pt holds a dcgan model; several checkpoints are the levels of a "
                                         "lapgan pyramid"):
        sample(ckpts[0], tmp_path / "dcgan.pt")
    with pytest.raises(SystemExit, match="--class needs a conditional checkpoint"):
        sample_main([f"--checkpoint={p}" for p in ckpts] + out + ["--class", "1"])


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("args, message", [
    (["--model.level", "3"], r"model.level \(3\) must be in \[0, 3\)"),
    (["--model.level", "-1"], r"model.level \(-1\) must be in \[0, 3\)"),
    (["--model.levels", "0"], "model.levels must be >= 1, got 0"),
    (["--data.crop_size", "24", "--model.levels", "4"],
     r"data.crop_size \(24\) must be divisible by 2\^\(model.levels - 1\) = 8 with a coarsest level of at least "
     r"4 px \(at least 32\)"),
    (["--data.crop_size", "20", "--model.level", "1"], r"gives level 1 a side that is not a multiple of 4"),
    (["--model.class_conditional", "true"], "model.class_conditional needs labels: data.dataset 'classes' or "
                                            "'fashion_mnist', got 'folder'"),
    (["--data.dataset", "default", "--model.channels", "1"], "data.dataset='default' has 3-channel images; set "
                                                              "model.channels 3"),
    (["--data.dataset", "aligned"], "model.family=lapgan needs single images"),
])
def test_config_errors(args, message, capsys):
    with pytest.raises(SystemExit):
        config.parse_config([*TINY, "--data.root", "photos", *args])
    assert re.search(message, capsys.readouterr().err)


def test_ready_configs_validate():
    cpu, fashion = config.Config(), config.Config()
    config.load_yaml(cpu, ROOT / "configs" / "lapgan_cpu.yaml")
    config.load_yaml(fashion, ROOT / "configs" / "lapgan_fashion_mnist.yaml")
    for cfg in (cpu, fashion):
        config.validate(cfg)
        assert (cfg.model.family, cfg.model.levels, cfg.data.crop_size) == ("lapgan", 3, 32)
    assert (cpu.data.dataset, cpu.model.channels) == ("default", 3)
    assert (fashion.data.dataset, fashion.model.channels, fashion.model.class_conditional) == ("fashion_mnist", 1,
                                                                                               True)
