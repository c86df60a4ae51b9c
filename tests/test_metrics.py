"""fastgan.metrics against independent references: closed forms, skimage, OpenCV, numpy/scipy."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from conftest import ROOT
from fastgan.metrics import (FrechetAndKernelDistance, InceptionFeatures, evaluate_pairs, l1, psnr, sharpness,
                             ssim)


def random_images(*shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(*shape, dtype=dtype) * 2 - 1


def noisy(images: torch.Tensor, std: float) -> torch.Tensor:
    return (images + std * torch.randn_like(images)).clamp(-1, 1)


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> list-like uint8 NHWC, the way the metrics scale to 0..255."""
    return ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)


# --- per-image metrics ---------------------------------------------------------------------

def test_l1_is_per_image_mean_absolute_error_in_unit_range():
    target = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    output = target.clone()
    output[0] += 0.4          # 0.2 in [0, 1] units everywhere
    output[1, :, :4] -= 0.8   # 0.4 on half the pixels
    values = l1(output, target)
    assert values.shape == (2,) and values.dtype == torch.float64
    torch.testing.assert_close(values, torch.tensor([0.2, 0.2], dtype=torch.float64))


def test_psnr_of_a_known_mse():
    target = torch.full((3, 1, 10, 10), -1.0, dtype=torch.float64)
    offsets = torch.tensor([0.2, 0.02, 2.0], dtype=torch.float64)  # unit-range errors 0.1, 0.01, 1.0
    output = target + offsets.view(3, 1, 1, 1)
    torch.testing.assert_close(psnr(output, target), torch.tensor([20.0, 40.0, 0.0], dtype=torch.float64))


def test_psnr_matches_skimage():
    target = random_images(2, 3, 16, 12)
    output = noisy(target, 0.1)
    expected = [peak_signal_noise_ratio(((target[i] + 1) / 2).numpy(), ((output[i] + 1) / 2).numpy(), data_range=1.0)
                for i in range(2)]
    torch.testing.assert_close(psnr(output, target), torch.tensor(expected, dtype=torch.float64))


def test_psnr_of_identical_images_is_inf():
    images = random_images(2, 3, 8, 8)
    values = psnr(images, images.clone())
    assert torch.isinf(values).all() and (values > 0).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage_wang_settings(channels):
    target = random_images(2, channels, 24, 31)
    output = noisy(target, 0.15)
    expected = [structural_similarity(((output[i] + 1) / 2).numpy(), ((target[i] + 1) / 2).numpy(), channel_axis=0,
                                      gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
                for i in range(2)]
    torch.testing.assert_close(ssim(output, target), torch.tensor(expected, dtype=torch.float64),
                               atol=1e-9, rtol=1e-9)


def test_ssim_float32_input_matches_skimage_within_float32_rounding():
    target = random_images(1, 3, 16, 16, dtype=torch.float32)
    output = noisy(target, 0.1)
    expected = structural_similarity(((output[0].double() + 1) / 2).numpy(), ((target[0].double() + 1) / 2).numpy(),
                                     channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1.0)
    assert ssim(output, target).item() == pytest.approx(expected, abs=1e-7)


def test_ssim_of_identical_images_is_one():
    images = random_images(2, 3, 16, 16)
    torch.testing.assert_close(ssim(images, images.clone()), torch.ones(2, dtype=torch.float64))


def test_ssim_memory_stays_near_the_images_own():
    """16 RGB images of 128x128 are 6 MB in float64; the windowed sums may take a few times that.
    (A float64 convolution on the CPU unfolded every window: about 1.3 GB for these.)"""
    script = ("import resource, torch; from fastgan.metrics import ssim; "
              "x = torch.rand(16, 3, 128, 128) * 2 - 1; y = x.flip(0); "
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; ssim(x, y); "
              "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    grown = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(grown.stdout.split()[-1]) < 150, grown.stdout  # MB


def test_ssim_rejects_images_smaller_than_its_window():
    images = random_images(1, 3, 10, 32)
    with pytest.raises(ValueError, match=r"ssim needs images of at least 11x11 pixels .*got 10x32"):
        ssim(images, images)


def test_sharpness_equals_cv2_laplacian_variance_on_grayscale():
    gray = np.random.default_rng(0).integers(0, 256, size=(2, 13, 17, 1), dtype=np.uint8)
    images = torch.from_numpy(gray).permute(0, 3, 1, 2).double() / 127.5 - 1
    expected = [cv2.Laplacian(gray[i, :, :, 0], cv2.CV_64F).var() for i in range(2)]
    torch.testing.assert_close(sharpness(images), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-9)


def test_sharpness_equals_cv2_on_rgb_converted_to_float_gray():
    images = random_images(2, 3, 15, 11)
    rgb = (images.permute(0, 2, 3, 1).numpy() + 1) * 127.5
    expected = [cv2.Laplacian(cv2.cvtColor(rgb[i].astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64),
                              cv2.CV_64F).var() for i in range(2)]
    torch.testing.assert_close(sharpness(images), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=0)


def test_sharpness_drops_under_blur():
    images = random_images(1, 3, 32, 32)
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    assert sharpness(blurred).item() < 0.2 * sharpness(images).item()


def test_sharpness_rejects_other_channel_counts():
    with pytest.raises(ValueError, match=r"grayscale \(C=1\) or RGB \(C=3\) images; got C=2"):
        sharpness(random_images(1, 2, 8, 8))


def test_evaluate_pairs_is_the_mean_of_every_per_image_metric():
    target = random_images(3, 3, 16, 16)
    output = noisy(target, 0.2)
    row = evaluate_pairs(output, target)
    expected = {"l1": l1(output, target), "psnr": psnr(output, target), "ssim": ssim(output, target),
                "sharpness_output": sharpness(output), "sharpness_target": sharpness(target)}
    assert list(row) == list(expected)
    for name, values in expected.items():
        assert row[name] == pytest.approx(values.mean().item(), rel=1e-12), name
    assert row["sharpness_output"] > row["sharpness_target"]  # added noise is high frequency


# --- input validation ----------------------------------------------------------------------

def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"output and target must have the same shape; got \(1, 3, 8, 8\) and "
                                         r"\(1, 3, 8, 9\)"):
        l1(random_images(1, 3, 8, 8), random_images(1, 3, 8, 9))


def test_values_outside_minus_one_one_are_rejected_with_the_fix():
    images = torch.rand(1, 3, 8, 8) * 255
    with pytest.raises(ValueError, match=r"target must hold values in \[-1, 1\] .*x / 127.5 - 1"):
        psnr(random_images(1, 3, 8, 8, dtype=torch.float32), images)


def test_integer_images_are_rejected():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"output must be a floating-point tensor in \[-1, 1\]; got dtype torch.uint8"):
        ssim(images, images)


def test_non_tensors_are_rejected():
    with pytest.raises(TypeError, match=r"images must be a torch.Tensor .*got numpy.ndarray"):
        sharpness(np.zeros((1, 3, 8, 8)))


def test_nan_is_rejected():
    images = random_images(1, 3, 8, 8)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="output contains NaN or infinite values"):
        l1(images, random_images(1, 3, 8, 8))


def test_unbatched_images_are_rejected():
    with pytest.raises(ValueError, match=r"target must have shape \[N, C, H, W\]; got \(3, 8, 8\)"):
        l1(random_images(1, 3, 8, 8), random_images(3, 8, 8))


# --- FID / KID -----------------------------------------------------------------------------

class TinyInception(nn.Module):
    """Stands in for Inception: 0..255 input, `return_features` selects pool features over logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6, 4)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        features = F.adaptive_avg_pool2d(torch.tanh(self.conv((img - 128) / 128)), 1).flatten(1)
        return features if return_features else self.fc(features)


class PlainExtractor(nn.Module):
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return img.mean(dim=(2, 3))


def save_script(module: nn.Module, path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny_inception(tmp_path_factory):
    torch.manual_seed(0)
    module = TinyInception().eval()
    return module, save_script(module, tmp_path_factory.mktemp("inception") / "tiny_inception.pt")


def test_features_are_the_networks_pool_features_of_quantized_pixels(tiny_inception):
    module, path = tiny_inception
    images = random_images(4, 3, 12, 12, dtype=torch.float32)
    features = InceptionFeatures(path)(images)
    with torch.no_grad():
        expected = module(((images + 1) * 127.5).round(), return_features=True)
    assert features.shape == (4, 6)
    torch.testing.assert_close(features, expected)


def test_grayscale_images_are_repeated_to_rgb(tiny_inception):
    _, path = tiny_inception
    gray = random_images(2, 1, 12, 12, dtype=torch.float32)
    extractor = InceptionFeatures(path)
    torch.testing.assert_close(extractor(gray), extractor(gray.repeat(1, 3, 1, 1)))


def test_networks_without_return_features_are_called_plainly(tmp_path):
    path = save_script(PlainExtractor(), tmp_path / "plain.pt")
    images = random_images(2, 3, 4, 4, dtype=torch.float32)
    torch.testing.assert_close(InceptionFeatures(path)(images), ((images + 1) * 127.5).round().mean(dim=(2, 3)))


def test_identical_sets_score_zero_and_shifted_sets_do_not(tiny_inception):
    _, path = tiny_inception
    metric = FrechetAndKernelDistance(path, kid_subsets=20, kid_subset_size=32)
    real = random_images(64, 3, 16, 16, dtype=torch.float32)
    metric.update(real, real=True)
    metric.update(real, real=False)
    same = metric.compute()
    metric.reset(keep_real=True)
    metric.update((real * 0.5 + 0.4).clamp(-1, 1), real=False)
    shifted = metric.compute()
    assert abs(same["fid"]) < 1e-5 and shifted["fid"] > 0.1
    assert abs(same["kid_mean"]) < 1e-3 and shifted["kid_mean"] > 0.05
    assert (shifted["num_real"], shifted["num_generated"], shifted["kid_subset_size"]) == (64, 64, 32)


def test_fid_is_the_frechet_distance_of_the_gaussian_fits(tiny_inception):
    _, path = tiny_inception
    rng = np.random.default_rng(0)
    real = rng.multivariate_normal([0.0, 1.0, -1.0], [[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], size=200)
    fake = rng.multivariate_normal([0.5, 0.5, 0.0], [[1.0, -0.2, 0.1], [-0.2, 0.5, 0.0], [0.1, 0.0, 1.5]], size=150)
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r + cov_f - 2 * scipy.linalg.sqrtm(cov_r @ cov_f).real)

    metric = FrechetAndKernelDistance(path)
    metric.update_features(torch.from_numpy(real[:120]), real=True)
    metric.update_features(torch.from_numpy(real[120:]), real=True)
    metric.update_features(torch.from_numpy(fake), real=False)
    assert metric.compute()["fid"] == pytest.approx(expected, rel=1e-9)


def test_kid_is_the_unbiased_cubic_kernel_mmd(tiny_inception):
    _, path = tiny_inception
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(40, 5)), rng.normal(0.3, 1.2, size=(40, 5))

    def kernel(a, b):
        return (a @ b.T / a.shape[1] + 1) ** 3

    m = len(real)
    k_rr, k_ff, k_rf = kernel(real, real), kernel(fake, fake), kernel(real, fake)
    expected = ((k_rr.sum() - np.trace(k_rr)) + (k_ff.sum() - np.trace(k_ff))) / (m * (m - 1)) - 2 * k_rf.mean()

    metric = FrechetAndKernelDistance(path, kid_subsets=3, kid_subset_size=1000)  # capped at the 40 samples
    metric.update_features(torch.from_numpy(real), real=True)
    metric.update_features(torch.from_numpy(fake), real=False)
    result = metric.compute()
    assert result["kid_subset_size"] == 40
    assert result["kid_mean"] == pytest.approx(expected, rel=1e-9)
    assert result["kid_std"] == pytest.approx(0.0, abs=1e-12)  # every subset is the whole set


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_fid_and_kid_are_computed_in_float64_whatever_the_feature_dtype(tiny_inception, dtype):
    """Half-precision features (from an extractor run under autocast) gave a NaN KID: its cubic kernel
    overflowed float16; bfloat16 gave a KID three times too large, and the FID came back rounded to the
    features' dtype. The same feature values must score the same in any dtype."""
    _, path = tiny_inception
    rng = np.random.default_rng(2)
    real = torch.from_numpy(np.abs(rng.normal(0.4, 0.3, size=(220, 256)))).to(dtype)
    fake = torch.from_numpy(np.abs(rng.normal(0.41, 0.3, size=(200, 256)))).to(dtype)
    results = []
    for features in ((real, fake), (real.double(), fake.double())):
        metric = FrechetAndKernelDistance(path, kid_subsets=2, kid_subset_size=200)
        metric.update_features(features[0], real=True)
        metric.update_features(features[1], real=False)
        results.append(metric.compute())
    assert math.isfinite(results[0]["kid_mean"]) and math.isfinite(results[0]["fid"])
    assert results[0] == results[1]


def test_kid_subsets_repeat_with_the_seed(tiny_inception):
    _, path = tiny_inception
    features = torch.randn(30, 4, dtype=torch.float64)
    results = []
    for _ in range(2):
        metric = FrechetAndKernelDistance(path, kid_subsets=5, kid_subset_size=10, seed=3)
        metric.update_features(features, real=True)
        metric.update_features(features + 0.5, real=False)
        torch.rand(7)  # moving the global generator must not matter
        global_state = torch.get_rng_state()
        results.append(metric.compute())
        assert torch.equal(torch.get_rng_state(), global_state)  # ... nor be moved by compute
    assert results[0] == results[1] and results[0]["kid_std"] > 0


def test_missing_inception_file_names_the_path_and_the_expected_file(tmp_path):
    missing = tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(FileNotFoundError, match=rf"Inception network file not found: {missing}\. .*TorchScript "
                                                r"Inception-v3 .*inception-2015-12-05\.pt"):
        FrechetAndKernelDistance(missing)


def test_a_state_dict_is_not_taken_for_a_torchscript_network(tmp_path):
    path = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save(TinyInception().state_dict(), path)
    with pytest.raises(ValueError, match=rf"{path} is not a TorchScript module .*plain state_dict"):
        InceptionFeatures(path)


def test_compute_needs_two_images_per_set(tiny_inception):
    _, path = tiny_inception
    metric = FrechetAndKernelDistance(path)
    metric.update(random_images(3, 3, 8, 8, dtype=torch.float32), real=True)
    metric.update(random_images(1, 3, 8, 8, dtype=torch.float32), real=False)
    with pytest.raises(ValueError, match="FID and KID need at least 2 generated images; got 1"):
        metric.compute()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_are_named_not_scored(tiny_inception, bad):
    """They gave a silent NaN FID and KID (and oneMKL errors on stderr)."""
    _, path = tiny_inception
    metric = FrechetAndKernelDistance(path, kid_subsets=2, kid_subset_size=5)
    features = torch.randn(10, 4, dtype=torch.float64)
    features[[3, 7], 1] = bad
    metric.update_features(torch.randn(10, 4), real=True)
    metric.update_features(features, real=False)
    with pytest.raises(ValueError, match=r"the generated features hold NaN or infinite values \(2 of 10 images\)"):
        metric.compute()


def test_feature_width_must_not_change(tiny_inception):
    _, path = tiny_inception
    metric = FrechetAndKernelDistance(path)
    metric.update_features(torch.randn(4, 6), real=True)
    with pytest.raises(ValueError, match="features have 5 dimensions but earlier batches had 6"):
        metric.update_features(torch.randn(4, 5), real=False)


@pytest.mark.parametrize("argument, value, message", [
    ("kid_subsets", 0, "kid_subsets must be an integer >= 1; got 0"),
    ("kid_subset_size", 1, "kid_subset_size must be an integer >= 2; got 1"),
    ("kid_subset_size", 10.0, "kid_subset_size must be an integer >= 2; got 10.0"),
])
def test_kid_arguments_are_validated(tiny_inception, argument, value, message):
    _, path = tiny_inception
    with pytest.raises(ValueError, match=message):
        FrechetAndKernelDistance(path, **{argument: value})
