"""SRGAN / SRResNet: networks, Y-channel metrics, data, VGG content loss, training, resume and the CLIs."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fastgan import checkpoint, config, metrics
from fastgan.data import DefaultSuperResolution, SuperResolutionFolder, downscale
from fastgan.data.transforms import to_tensor
from fastgan.evaluate import main as evaluate_main
from fastgan.families.srgan import VGG_RESCALE, load_generator_weights
from fastgan.models import SRGANDiscriminator, SRResNetGenerator
from fastgan.train import main as train_main
from fastgan.translate import main as translate_main
from fastgan.vgg import VGG19_RELUS, VGG19Features, load_vgg19_features
from train_helpers import final_weights, loss_trace, metric_records, write_images

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data.crop_size", "24", "--model.scale", "2", "--model.ngf", "8", "--model.num_blocks", "1",
        "--model.ndf", "4", "--train.batch_size", "2", "--train.log_every", "1", "--train.sample_every", "1000",
        "--train.val_batches", "1", "--train.progress", "false", "--optim.schedule", "constant"]


def train(out_dir, family: str, *args) -> int:
    return train_main([*TINY, "--model.family", family, "--train.out_dir", str(out_dir), *args])


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def images(n=2, size=32, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, size, size)).astype(np.float32)) / 127.5 - 1


# ----------------------------------------------------------------------------- networks

def test_parameter_counts_and_shapes():
    G = SRResNetGenerator()  # B=16, 64 channels, batch norm, x4
    assert count(G) == 1_547_350  # 1,549,462 minus the 2,112 biases BatchNorm cancels
    # 8 convs + BN + Linear(512*6*6, 1024) + Linear(1024, 1) at the paper's 96 px
    assert count(SRGANDiscriminator(ndf=64, pool_size=6)) == 23_563_649
    assert G(torch.zeros(1, 3, 24, 20)).shape == (1, 3, 96, 80)
    assert SRResNetGenerator(ngf=8, num_blocks=1, scale=8)(torch.zeros(2, 3, 5, 7)).shape == (2, 3, 40, 56)
    D = SRGANDiscriminator(ndf=4, pool_size=2)
    assert D(torch.zeros(3, 3, 24, 24)).shape == D(torch.zeros(3, 3, 50, 40)).shape == (3,)
    with pytest.raises(ValueError, match="scale must be one of 2, 4, 8"):
        SRResNetGenerator(scale=3)


def test_fused_and_stock_discriminators_are_interchangeable():
    torch.manual_seed(0)
    stock = SRGANDiscriminator(ndf=8, pool_size=2, fused=False)
    fused = SRGANDiscriminator(ndf=8, pool_size=2, fused=True)
    assert stock.state_dict().keys() == fused.state_dict().keys()
    assert any(type(m).__name__ == "BatchNormLeakyReLU2d" for m in fused.modules())
    fused.load_state_dict(stock.state_dict())
    x = images(4, 32)
    torch.testing.assert_close(fused(x), stock(x), atol=1e-5, rtol=1e-5)
    for a, b in zip(fused.state_dict().values(), stock.state_dict().values()):
        torch.testing.assert_close(a, b)  # running statistics updated alike


# ----------------------------------------------------------------------------- metrics

def test_y_psnr_and_ssim_match_skimage_with_border_crop():
    out, target = images(2, 40, seed=1), images(2, 40, seed=2)
    target = (0.7 * target + 0.3 * out).clamp(-1, 1)
    psnr, ssim = metrics.psnr_y(out, target, border=4), metrics.ssim_y(out, target, border=4)
    for i in range(2):
        y = [rgb2ycbcr(((x[i].double().permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))[4:-4, 4:-4, 0]
             for x in (out, target)]
        assert psnr[i].item() == pytest.approx(peak_signal_noise_ratio(y[1], y[0], data_range=255), abs=1e-9)
        expected = structural_similarity(y[1], y[0], data_range=255, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
        assert ssim[i].item() == pytest.approx(expected, abs=1e-6)


def test_y_psnr_of_a_one_level_shift_is_known():
    """Every RGB channel one 8-bit level up: Y moves by (65.481 + 128.553 + 24.966) / 255 = 219 / 255."""
    base = torch.full((1, 3, 16, 16), 100 / 127.5 - 1)
    shifted = torch.full((1, 3, 16, 16), 101 / 127.5 - 1)
    expected = 10 * math.log10(255 ** 2 / (219 / 255) ** 2)  # 49.45 dB
    assert metrics.psnr_y(shifted, base, border=2).item() == pytest.approx(expected, abs=1e-9)
    assert metrics.rgb_to_y(torch.ones(1, 3, 2, 2)).unique().item() == pytest.approx(235.0)
    with pytest.raises(ValueError, match="a border of 8 leaves nothing of 16x16 images"):
        metrics.psnr_y(shifted, base, border=8)


def test_bicubic_baseline_is_pil_bicubic():
    lr = images(2, 10, seed=3)
    up = metrics.bicubic_upscale(lr, 4)
    assert up.shape == (2, 3, 40, 40)
    array = ((lr[1].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    expected = to_tensor(Image.fromarray(array).resize((40, 40), Image.BICUBIC))
    assert torch.equal(up[1], expected)
    flat = torch.full((1, 3, 6, 6), 60 / 127.5 - 1)
    assert torch.equal(metrics.bicubic_upscale(flat, 2), torch.full((1, 3, 12, 12), 60 / 127.5 - 1))


# ----------------------------------------------------------------------------- data

def test_folder_pairs_are_bicubic_downscales_and_deterministic(tmp_path):
    write_images(tmp_path, 3, size=40)
    Image.new("RGB", (20, 30)).save(tmp_path / "tiny.png")
    data = SuperResolutionFolder(tmp_path, crop_size=24, scale=4, seed=5)
    sample = data[1]
    assert sample["hr"].shape == (3, 24, 24) and sample["lr"].shape == (3, 6, 6)
    hr = Image.fromarray(((sample["hr"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8))
    assert torch.equal(sample["lr"], to_tensor(downscale(hr, 4)))
    assert torch.equal(SuperResolutionFolder(tmp_path, crop_size=24, scale=4, seed=5)[1]["hr"], sample["hr"])
    data.set_epoch(1)
    assert not torch.equal(data[1]["hr"], sample["hr"]), "a new epoch should draw a new crop"
    with pytest.warns(UserWarning, match=r"skipping .*tiny.png: 20x30 is smaller than the 24x24 crop"):
        assert data[3] is None
    val = SuperResolutionFolder(tmp_path, crop_size=24, scale=4, train=False)
    assert torch.equal(val[0]["hr"], to_tensor(np.asarray(Image.open(tmp_path / "000.png"))[8:32, 8:32]))
    with pytest.raises(ValueError, match=r"crop_size \(30\) must be a multiple of scale \(4\)"):
        SuperResolutionFolder(tmp_path, crop_size=30, scale=4)


def test_embedded_photos_split_like_the_default_set():
    train, val = DefaultSuperResolution("train", crop_size=32, scale=4), DefaultSuperResolution("val", 32, 4)
    assert len(train) == 512 and len(val) == 64
    assert {val[i]["name"].split("_")[0] for i in range(8)} == {"coffee"}
    assert not any(train[i]["name"].startswith(("coffee", "chelsea")) for i in range(32))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("args, message", [
    (["--data.crop_size", "26"], r"data.crop_size \(26\) must be a multiple of model.scale \(4\)"),
    (["--data.crop_size", "16"], r"data.crop_size \(16\) is too small.*use at least 19"),
    (["--loss.content", "vgg"], "loss.content=vgg needs loss.vgg_weights"),
    (["--loss.vgg_weights", "/nowhere/vgg19.pth"], "loss.vgg_weights: file not found: /nowhere/vgg19.pth"),
    (["--model.init_generator", "/nowhere/g.pt"], "model.init_generator: file not found: /nowhere/g.pt"),
    (["--data.dataset", "classes", "--data.root", "x"], "model.family=srgan trains on photos"),
])
def test_config_errors(args, message, capsys):
    with pytest.raises(SystemExit):
        config.parse_config(["--model.family", "srgan", "--model.scale", "4", *args])
    assert re.search(message, capsys.readouterr().err)


# ----------------------------------------------------------------------------- VGG

def write_vgg(path, layer="relu2_2", extra=True) -> dict:
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in VGG19Features(layer).features.state_dict().items()}
    if extra:
        state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as torchvision files carry it
    torch.save(state, path)
    return state


def test_vgg_loads_torchvision_keys_and_reports_bad_files(tmp_path):
    assert set(VGG19_RELUS) == set(config.VGG_LAYERS)
    state = write_vgg(tmp_path / "vgg.pth")
    vgg = load_vgg19_features(tmp_path / "vgg.pth", "relu2_2")
    assert torch.equal(vgg.features[7].weight, state["features.7.weight"])
    assert len(vgg.features) == 9 and not any(p.requires_grad for p in vgg.parameters())
    with pytest.raises(ValueError, match=r"lacks .* needed up to relu5_4, e.g. features.10.weight"):
        load_vgg19_features(tmp_path / "vgg.pth", "relu5_4")
    with pytest.raises(FileNotFoundError, match="VGG19 weights file not found: /nowhere.pth"):
        load_vgg19_features("/nowhere.pth")


def test_srgan_with_vgg_content_loss(tmp_path, capsys):
    write_vgg(tmp_path / "vgg.pth")
    out = tmp_path / "run"
    assert train(out, "srgan", "--loss.vgg_weights", str(tmp_path / "vgg.pth"), "--loss.vgg_layer", "relu2_2",
                 "--train.max_steps", "2") == 0
    assert "srgan generator loss: content = VGG19 relu2_2 feature MSE" in capsys.readouterr().out
    from fastgan.families import build_family
    cfg = config.config_from_dict(checkpoint.load(out / "ckpt_00000002.pt")["config"])
    family = build_family(cfg)
    fake, hr = images(2, 24, seed=4), images(2, 24, seed=5)
    vgg = load_vgg19_features(tmp_path / "vgg.pth", "relu2_2")
    manual = ((vgg(fake) - vgg(hr)) * VGG_RESCALE).square().mean()
    torch.testing.assert_close(family.content_loss(fake, hr), manual)


# ----------------------------------------------------------------------------- training

def test_srresnet_pretrains_then_initializes_srgan(tmp_path, capsys):
    pre = tmp_path / "srresnet"
    assert train(pre, "srresnet", "--train.max_steps", "4") == 0
    assert "srresnet generator loss: content = pixel MSE" in capsys.readouterr().out
    content = loss_trace(pre, "loss_content")
    assert len(content) == 4 and all(map(math.isfinite, content)) and len(set(content)) > 1
    assert not loss_trace(pre, "loss_D")
    assert checkpoint.load(pre / "ckpt_00000004.pt")["optimizers"]["D"]["state"] == {}
    assert any("val_psnr_y" in r for r in metric_records(pre)) and (pre / "best.pt").is_file()

    ckpt = pre / "ckpt_00000004.pt"
    from fastgan.families import build_family
    family = build_family(config.parse_config([*TINY, "--model.family", "srgan", "--model.init_generator", str(ckpt)]))
    pretrained = checkpoint.load(ckpt)["models"]["G"]
    assert all(torch.equal(v, pretrained[k]) for k, v in family.models["G"].state_dict().items())
    assert family.notes[-1] == f"generator initialized from {ckpt}"

    G = SRResNetGenerator(ngf=16, num_blocks=1, scale=2)
    with pytest.raises(ValueError, match="does not fit this generator .*model.ngf, model.num_blocks"):
        load_generator_weights(G, str(ckpt))


def test_srgan_trains_adversarially_and_resumes_exactly(tmp_path):
    common = ["--loss.tv_weight", "0.01", "--train.val_batches", "0"]
    assert train(tmp_path / "straight", "srgan", "--train.max_steps", "4", *common) == 0
    for key in ("loss_D", "loss_G_adv", "loss_content", "loss_tv", "loss_G"):
        values = loss_trace(tmp_path / "straight", key)
        assert len(values) == 4 and all(map(math.isfinite, values)) and len(set(values)) > 1, key
    assert train(tmp_path / "split", "srgan", "--train.max_steps", "2", *common) == 0
    assert train(tmp_path / "split", "srgan", "--train.max_steps", "4", "--train.resume", "auto", *common) == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- command lines

def test_cli_train_translate_evaluate(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_images(photos / "train", 4, size=40)
    write_images(photos / "val", 2, size=40, seed=1)
    run = tmp_path / "run"
    assert train(run, "srresnet", "--data.dataset", "folder", "--data.root", str(photos),
                 "--train.max_steps", "2") == 0
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((9, 13, 3), np.uint8)).save(small / "a.png")
    assert translate_main(["--checkpoint", str(run / "best.pt"), "--input", str(small),
                           "--output", str(tmp_path / "big"), "--device", "cpu"]) == 0
    assert Image.open(tmp_path / "big" / "a.png").size == (26, 18)
    with pytest.raises(SystemExit, match="--size does not apply to srresnet"):
        translate_main(["--checkpoint", str(run / "best.pt"), "--input", str(small), "--output", str(tmp_path),
                        "--size", "32"])

    capsys.readouterr()
    scores_path = tmp_path / "scores.json"
    assert evaluate_main(["--checkpoint", str(run / "best.pt"), "--data", str(photos / "val"), "--device", "cpu",
                          "--json", str(scores_path)]) == 0
    out = capsys.readouterr().out
    assert "x2 on 2 image(s), Y channel, border 2" in out and "bicubic" in out
    scores = json.loads(scores_path.read_text())
    hr = to_tensor(np.asarray(Image.open(photos / "val" / "000.png")))[None]
    lr = to_tensor(downscale(Image.open(photos / "val" / "000.png").convert("RGB"), 2))[None]
    first = metrics.psnr_y(metrics.bicubic_upscale(lr, 2), hr, 2).item()
    hr1 = Image.open(photos / "val" / "001.png").convert("RGB")
    second = metrics.psnr_y(metrics.bicubic_upscale(to_tensor(downscale(hr1, 2))[None], 2), to_tensor(hr1)[None],
                            2).item()
    assert scores["bicubic_psnr_y"] == pytest.approx((first + second) / 2, abs=1e-9)
    assert math.isfinite(scores["psnr_y"]) and 0 < scores["ssim_y"] <= 1


def test_paper_configs_hold_the_paper_settings():
    pre, gan = config.Config(), config.Config()
    config.load_yaml(pre, ROOT / "configs" / "srgan_paper_srresnet.yaml")
    config.load_yaml(gan, ROOT / "configs" / "srgan_paper.yaml")
    assert (pre.model.family, pre.loss.content, pre.train.max_steps) == ("srresnet", "mse", 1_000_000)
    for cfg in (pre, gan):
        assert (cfg.model.num_blocks, cfg.model.ngf, cfg.model.ndf, cfg.model.scale) == (16, 64, 64, 4)
        assert (cfg.data.crop_size, cfg.train.batch_size, cfg.optim.lr, cfg.optim.beta1) == (96, 16, 1e-4, 0.9)
    assert (gan.loss.sr_lambda_adv, gan.loss.vgg_layer, gan.optim.step_gamma) == (1e-3, "relu5_4", 10)
