"""Gaussian and Laplacian image pyramids (Burt & Adelson), the representation LAPGAN generates in.

`downsample` blurs with the 5-tap binomial kernel [1, 4, 6, 4, 1] / 16 and keeps every
second pixel; `upsample` puts the pixels back on every second position of a zero image
and blurs with the same kernel times 4 (2 per axis), so a constant image stays constant.
Borders are reflected. Pyramids are lists ordered coarse to fine, index = LAPGAN level:

    gaussian  [I_0, I_1, ..., I_{L-1} = image]          I_k = downsample(I_{k+1})
    laplacian [I_0, h_1, ..., h_{L-1}]                   h_k = I_k - upsample(I_{k-1})

`reconstruct` inverts `laplacian_pyramid` whatever the filters are, because each band
is defined as the residual of the very upsampling that adds it back; only floating-point
rounding separates the result from the image (about 1e-16 in float64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)
MIN_SIZE = 4  # reflect padding by 2 needs at least 3 pixels; 4 keeps every level even


def _kernel(x: torch.Tensor) -> torch.Tensor:
    taps = torch.tensor(BINOMIAL_5, dtype=x.dtype, device=x.device) / 16
    return torch.outer(taps, taps).expand(x.shape[1], 1, 5, 5)


def _check_images(x: torch.Tensor, name: str = "image") -> None:
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor [N, C, H, W]; got {x.dtype} of shape {tuple(x.shape)}")


def gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 binomial blur of each channel, borders reflected; sizes unchanged."""
    _check_images(x)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), _kernel(x), groups=x.shape[1])


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Blur, then every second pixel: [N, C, H, W] -> [N, C, H/2, W/2] (H and W even)."""
    _check_images(x)
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"downsample needs even sides; got {x.shape[-2]}x{x.shape[-1]}")
    return gaussian_blur(x)[..., ::2, ::2]


def upsample(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W]: zeros between the pixels, then 4 x the blur."""
    _check_images(x)
    n, c, h, w = x.shape
    spread = x.new_zeros(n, c, 2 * h, 2 * w)
    spread[..., ::2, ::2] = x
    return 4 * gaussian_blur(spread)


def check_levels(size: int, levels: int) -> int:
    """The coarsest side of a `levels`-level pyramid over size x size images, or a ValueError saying why not."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int, got {levels!r}")
    factor = 2 ** (levels - 1)
    if size % factor or size // factor < MIN_SIZE:
        raise ValueError(f"a {levels}-level pyramid needs a side divisible by {factor} whose coarsest level is at "
                         f"least {MIN_SIZE} pixels; got {size}")
    return size // factor


def gaussian_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[I_0 (coarsest), ..., I_{levels-1} = image]: each level the blurred half of the next."""
    _check_images(image)
    for side in image.shape[-2:]:
        check_levels(side, levels)
    pyramid = [image]
    for _ in range(levels - 1):
        pyramid.insert(0, downsample(pyramid[0]))
    return pyramid


def laplacian_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[I_0 (the coarsest low-pass image), h_1, ..., h_{levels-1}]: band k is what level k adds to level k-1."""
    gaussian = gaussian_pyramid(image, levels)
    return [gaussian[0]] + [fine - upsample(coarse) for coarse, fine in zip(gaussian, gaussian[1:])]


def reconstruct(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """The image a Laplacian pyramid (coarse to fine) describes: upsample and add, level by level."""
    if not pyramid:
        raise ValueError("reconstruct needs at least one level")
    image = pyramid[0]
    for k, band in enumerate(pyramid[1:], start=1):
        if band.shape[-2:] != (2 * image.shape[-2], 2 * image.shape[-1]):
            raise ValueError(f"pyramid level {k} is {band.shape[-2]}x{band.shape[-1]}; after a "
                             f"{image.shape[-2]}x{image.shape[-1]} level it must be twice that")
        image = upsample(image) + band
    return image


__all__ = ["gaussian_blur", "downsample", "upsample", "check_levels", "gaussian_pyramid", "laplacian_pyramid",
           "reconstruct"]
