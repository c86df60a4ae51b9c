"""Image-to-image and generative metrics for fastgan's [-1, 1] images.

Per-image metrics (`l1`, `psnr`, `ssim`, `sharpness`) return a float64 tensor of shape
(N,), one value per image, so results of many batches can be concatenated and averaged
over a whole test set; `evaluate_pairs` averages them into one table row. FID and KID
compare two image sets through a local TorchScript Inception network, because no weights
can be downloaded at run time. Conventions (ranges, borders, scales) are in docs/metrics.md.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .visualize import to_uint8

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
# ITU-R BT.601 luma, the weights of cv2.COLOR_RGB2GRAY.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# cv2.Laplacian's default (ksize=1) aperture.
LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
EXPECTED_INCEPTION = (
    "a TorchScript Inception-v3 feature extractor such as inception-2015-12-05.pt (the file StyleGAN2-ADA "
    "and clean-fid load with torch.jit.load; forward(img, return_features=True) on 0..255 RGB images gives "
    "2048 pool features)")


def _check_images(images, name: str) -> None:
    """Reject anything but a finite float [N, C, H, W] tensor in [-1, 1], naming the argument."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, C, H, W] in [-1, 1]; "
                        f"got {type(images).__module__}.{type(images).__qualname__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor in [-1, 1]; got dtype {images.dtype} "
                        f"(map uint8 images with x.float() / 127.5 - 1)")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W]; got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} holds no images (shape {tuple(images.shape)})")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1.0 or high > 1.0:
        raise ValueError(f"{name} must hold values in [-1, 1] (the generators' tanh range); got min {low:.4g}, "
                         f"max {high:.4g} (map [0, 1] images with x * 2 - 1, [0, 255] with x / 127.5 - 1)")


def _check_pair(output, target) -> None:
    _check_images(output, "output")
    _check_images(target, "target")
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape; got {tuple(output.shape)} and "
                         f"{tuple(target.shape)}")


def _unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] in float64, where the image-quality metrics are defined."""
    return (images.detach().to(torch.float64) + 1.0) / 2.0


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image, in [0, 1] units (half the L1 loss measured on [-1, 1])."""
    _check_pair(output, target)
    return (_unit(output) - _unit(target)).abs().flatten(1).mean(1)


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, data range 1 on [0, 1]; identical images give inf."""
    _check_pair(output, target)
    mse = (_unit(output) - _unit(target)).square().flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window() -> list[float]:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    weights = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return (weights / weights.sum()).tolist()


def _local_mean(images: torch.Tensor, window: list[float]) -> torch.Tensor:
    """Gaussian-weighted mean over every window that lies wholly inside the image, as two 1-D passes
    of shifted slices: memory stays that of the image. (A float64 convolution on the CPU unfolds
    every 11x11 window first, about 80 MB per 128x128 RGB image, which ran validation out of memory.)"""
    rows, cols = images.shape[-2] - len(window) + 1, images.shape[-1] - len(window) + 1
    vertical = sum(weight * images[..., k:k + rows, :] for k, weight in enumerate(window))
    return sum(weight * vertical[..., k:k + cols] for k, weight in enumerate(window))


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Wang et al.: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1).

    Averaged over channels and over the pixels whose whole window lies inside the image, as
    the reference MATLAB code and skimage do (skimage.metrics.structural_similarity with
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1).
    """
    _check_pair(output, target)
    height, width = output.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (its window); "
                         f"got {height}x{width}")
    x, y, window = _unit(output), _unit(target), _gaussian_window()
    mean_x, mean_y = _local_mean(x, window), _local_mean(y, window)
    var_x = _local_mean(x * x, window) - mean_x * mean_x
    var_y = _local_mean(y * y, window) - mean_y * mean_y
    cov = _local_mean(x * y, window) - mean_x * mean_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """Variance of the Laplacian of each image's grayscale, on the 0..255 scale.

    Blur removes the high frequencies the Laplacian responds to, so an L1/L2-only generator
    scores below its targets and adversarial training closes the gap. Equal to
    cv2.Laplacian(gray, cv2.CV_64F).var() with gray = cv2.cvtColor(rgb, COLOR_RGB2GRAY) in
    float (not rounded to uint8); borders reflect as OpenCV's BORDER_REFLECT_101.
    """
    _check_images(images, "images")
    channels, height, width = images.shape[1:]
    if channels not in (1, 3):
        raise ValueError(f"sharpness needs grayscale (C=1) or RGB (C=3) images; got C={channels}")
    if min(height, width) < 2:
        raise ValueError(f"sharpness needs images of at least 2x2 pixels; got {height}x{width}")
    pixels = _unit(images) * 255.0
    if channels == 3:
        weights = torch.tensor(GRAY_WEIGHTS, dtype=pixels.dtype, device=pixels.device)
        pixels = (pixels * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    kernel = torch.tensor(LAPLACIAN_KERNEL, dtype=pixels.dtype, device=pixels.device).view(1, 1, 3, 3)
    laplacian = F.conv2d(F.pad(pixels, (1, 1, 1, 1), mode="reflect"), kernel)
    return laplacian.flatten(1).var(1, unbiased=False)


def evaluate_pairs(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Every image-to-image metric averaged over the batch: one table row."""
    _check_pair(output, target)
    per_image = {
        "l1": l1(output, target),
        "psnr": psnr(output, target),
        "ssim": ssim(output, target),
        "sharpness_output": sharpness(output),
        "sharpness_target": sharpness(target),
    }
    return {name: float(values.mean()) for name, values in per_image.items()}


class InceptionFeatures(nn.Module):
    """A local TorchScript Inception network fed with fastgan images.

    Images are quantized to 0..255 RGB levels (grayscale repeated to three channels), as the
    StyleGAN / clean-fid protocols do, and passed at their own size: the StyleGAN network
    resizes to 299x299 itself. Networks whose forward takes `return_features` get it set,
    so they return pool features rather than logits.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception network file not found: {path}. FID and KID need "
                                    f"{EXPECTED_INCEPTION}; no weights can be downloaded here, so copy the file "
                                    f"in and pass its path")
        try:
            with warnings.catch_warnings():
                # The published Inception files exist only as TorchScript; the user cannot act on it.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated",
                                        category=DeprecationWarning)
                network = torch.jit.load(str(path), map_location=device)
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise ValueError(f"{path} is not a TorchScript module ({first_line}); expected {EXPECTED_INCEPTION}. "
                             f"A plain state_dict (e.g. pytorch-fid's pt_inception-2015-12-05-*.pth) "
                             f"does not load here") from error
        self.network = network.eval()
        self.device = torch.device(device)
        argument_names = [argument.name for argument in network.forward.schema.arguments]
        self.takes_return_features = "return_features" in argument_names

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, "images")
        channels = images.shape[1]
        if channels not in (1, 3):
            raise ValueError(f"the Inception network needs grayscale (C=1) or RGB (C=3) images; got C={channels}")
        pixels = ((images.detach().to(self.device, torch.float32) + 1.0) * 127.5).round()
        if channels == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        if self.takes_return_features:
            features = self.network(pixels, return_features=True)
        else:
            features = self.network(pixels)
        return features.reshape(images.shape[0], -1)


class _Precomputed(nn.Module):
    """Hands torchmetrics features already extracted, so Inception runs once for FID and KID."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class FrechetAndKernelDistance:
    """FID and KID between real and generated images, from one Inception pass per image.

    Features are kept (on the CPU) until `compute`, which fits torchmetrics' FID (Frechet
    distance of the two Gaussian fits) and KID (unbiased MMD^2, cubic polynomial kernel,
    averaged over random subsets). The subset size is capped by the smaller set, as
    StyleGAN's evaluation does, and the subsets are drawn from `seed`, so a result repeats.
    """

    def __init__(self, inception_path: str | Path, *, device: str | torch.device = "cpu",
                 kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0):
        for name, value, minimum in (("kid_subsets", kid_subsets, 1), ("kid_subset_size", kid_subset_size, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
        self.features = InceptionFeatures(inception_path, device)
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self._real: list[torch.Tensor] = []
        self._fake: list[torch.Tensor] = []

    def update(self, images: torch.Tensor, *, real: bool) -> None:
        """Add a batch of [-1, 1] images to the real or the generated set."""
        self.update_features(self.features(images), real=real)

    def update_features(self, features: torch.Tensor, *, real: bool) -> None:
        """Add features from any extractor, [N, D]; D must match what came before."""
        if not isinstance(features, torch.Tensor) or not features.is_floating_point() or features.dim() != 2:
            raise ValueError(f"features must be a floating-point [N, D] tensor; got "
                             f"{getattr(features, 'dtype', type(features).__name__)} of shape "
                             f"{tuple(getattr(features, 'shape', ()))}")
        stored = self._real + self._fake
        if stored and features.shape[1] != stored[0].shape[1]:
            raise ValueError(f"features have {features.shape[1]} dimensions but earlier batches had "
                             f"{stored[0].shape[1]}")
        (self._real if real else self._fake).append(features.detach().cpu())

    def reset(self, *, keep_real: bool = False) -> None:
        """Forget the generated set (and the real one unless keep_real), e.g. between checkpoints."""
        self._fake = []
        if not keep_real:
            self._real = []

    def compute(self) -> dict[str, float | int]:
        """fid, kid_mean, kid_std, and the kid_subset_size and set sizes they came from."""
        counts = {"real": sum(len(f) for f in self._real), "generated": sum(len(f) for f in self._fake)}
        for name, count in counts.items():
            if count < 2:
                raise ValueError(f"FID and KID need at least 2 {name} images; got {count}")
        # float64 whatever the features' dtype: torchmetrics returns FID in that dtype and computes KID's
        # cubic kernel in it, which overflows float16 and swamps a KID of 1e-4 in bfloat16.
        real, fake = torch.cat(self._real).double(), torch.cat(self._fake).double()
        for name, features in (("real", real), ("generated", fake)):
            bad = int((~torch.isfinite(features)).any(1).sum())
            if bad:
                raise ValueError(f"the {name} features hold NaN or infinite values ({bad} of {len(features)} images); "
                                 f"FID and KID would be NaN: check the feature extractor")
        num_features = real.shape[1]
        fid = FrechetInceptionDistance(feature=_Precomputed(num_features))
        fid.update(real, real=True)
        fid.update(fake, real=False)
        subset_size = min(self.kid_subset_size, counts["real"], counts["generated"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            kid = KernelInceptionDistance(feature=_Precomputed(num_features), subsets=self.kid_subsets,
                                          subset_size=subset_size)
        kid.update(real, real=True)
        kid.update(fake, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid_mean, kid_std = kid.compute()
        return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
                "kid_subset_size": subset_size, "num_real": counts["real"], "num_generated": counts["generated"]}


# ----------------------------------------------------------------------------- super-resolution
# The super-resolution literature's protocol (the SRCNN / SRGAN MATLAB evaluation): outputs
# quantized to 8 bits, converted to the luma Y of ITU-R BT.601 on the 16..235 scale
# (MATLAB rgb2ycbcr, skimage.color.rgb2ycbcr), `scale` pixels cropped from every border,
# PSNR with peak 255 and SSIM with the Wang et al. settings.
YCBCR_Y_WEIGHTS = (65.481, 128.553, 24.966)
YCBCR_Y_OFFSET = 16.0


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB [N, 3, H, W] -> BT.601 luma [N, 1, H, W] in 16..235, from the images rounded to 8 bits."""
    _check_images(images, "images")
    if images.shape[1] != 3:
        raise ValueError(f"rgb_to_y needs RGB images (C=3); got C={images.shape[1]}")
    levels = (_unit(images) * 255.0).round() / 255.0
    weights = torch.tensor(YCBCR_Y_WEIGHTS, dtype=levels.dtype, device=levels.device).view(1, 3, 1, 1)
    return (levels * weights).sum(1, keepdim=True) + YCBCR_Y_OFFSET


def _y_pair(output: torch.Tensor, target: torch.Tensor, border: int) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair(output, target)
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative int, got {border!r}")
    height, width = output.shape[-2:]
    if min(height, width) <= 2 * border:
        raise ValueError(f"a border of {border} leaves nothing of {height}x{width} images")
    crop = (slice(None), slice(None), slice(border, height - border), slice(border, width - border))
    return rgb_to_y(output)[crop], rgb_to_y(target)[crop]


def mse_y(output: torch.Tensor, target: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Mean squared error per image on the Y channel (0..255 scale) after cropping `border` pixels."""
    y_out, y_target = _y_pair(output, target, border)
    return (y_out - y_target).square().flatten(1).mean(1)


def psnr_y(output: torch.Tensor, target: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR per image in dB on the Y channel, peak 255, after cropping `border` pixels (use the scale factor)."""
    return 10.0 * torch.log10(255.0 ** 2 / mse_y(output, target, border))


def ssim_y(output: torch.Tensor, target: torch.Tensor, border: int = 0) -> torch.Tensor:
    """SSIM per image on the Y channel (data range 255), after cropping `border` pixels."""
    y_out, y_target = _y_pair(output, target, border)
    return ssim(y_out / 127.5 - 1.0, y_target / 127.5 - 1.0)


def bicubic_upscale(images: torch.Tensor, scale: int) -> torch.Tensor:
    """[-1, 1] images enlarged `scale` times with PIL's bicubic filter (a = -0.5, as MATLAB's imresize).

    The baseline of super-resolution tables, computed the way fastgan's low-resolution
    inputs are made (PIL bicubic on 8-bit images), so both directions use one kernel.
    """
    _check_images(images, "images")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    height, width = images.shape[-2:]
    out = []
    for array in to_uint8(images):
        big = Image.fromarray(array).resize((width * scale, height * scale), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(big).transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1.0)
    return torch.stack(out).to(images.device)


def evaluate_superres(output: torch.Tensor, target: torch.Tensor, scale: int) -> dict[str, float]:
    """Y-channel PSNR, SSIM and MSE with a border crop of `scale`, averaged over the images."""
    per_image = {"psnr_y": psnr_y(output, target, scale), "ssim_y": ssim_y(output, target, scale),
                 "mse_y": mse_y(output, target, scale)}
    return {name: float(values.mean()) for name, values in per_image.items()}
