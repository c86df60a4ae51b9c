"""Augmentations drawn from a per-sample generator and applied identically to every image of a sample.

PIL does the decoding and the bicubic resizing; crops and flips are numpy slices, so a pair
of images given the same generator stays pixel-aligned.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .base import check_positive_int


def to_tensor(image: Image.Image | np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC -> float32 CxHxW in [-1, 1], the range of a tanh generator's output."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)).div_(127.5).sub_(1.0)


def center_crop_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, left, top) of resize_center_crop; the DALI loader takes the
    same numbers, so both loaders cut the same window."""
    scale = size / min(width, height)
    resized_width, resized_height = max(size, round(width * scale)), max(size, round(height * scale))
    return resized_width, resized_height, (resized_width - size) // 2, (resized_height - size) // 2


# Resized whole, a strip far longer than wide would be a huge intermediate for the little square kept (a
# 200000 x 1 image at size 256 is 39 GB): past this many resized pixels per kept one, only the source
# region under the square is resampled. PIL rounds that between its two passes in another order, so it
# may differ from the whole-image resize by a few grey levels: a threshold well above real photos'
# proportions keeps their pixels (and the DALI loader's match of identity resizes) as they were.
MAX_RESIZED_PER_KEPT_PIXEL = 16


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scales the shorter side to `size` and keeps the centre square, so nothing is stretched."""
    width, height, left, top = center_crop_geometry(image.width, image.height, size)
    if width * height <= MAX_RESIZED_PER_KEPT_PIXEL * size * size:
        return image.resize((width, height), Image.BICUBIC).crop((left, top, left + size, top + size))
    x_scale, y_scale = image.width / width, image.height / height
    box = (left * x_scale, top * y_scale, (left + size) * x_scale, (top + size) * y_scale)
    return image.resize((size, size), Image.BICUBIC, box=box)


class PairedTransform:
    """pix2pix augmentation: resize to load_size, random crop_size crop, random horizontal flip.

    train=False is the evaluation path: resize straight to crop_size, no crop jitter, no flip.
    """

    def __init__(self, load_size: int = 286, crop_size: int = 256, flip: bool = True, train: bool = True):
        self.load_size = check_positive_int("load_size", load_size)
        self.crop_size = check_positive_int("crop_size", crop_size)
        if crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) must not exceed load_size ({load_size})")
        self.flip = flip
        self.train = train

    def __call__(self, images: Sequence[Image.Image], rng: np.random.Generator) -> list[torch.Tensor]:
        if not self.train:
            size = (self.crop_size, self.crop_size)
            return [to_tensor(image.resize(size, Image.BICUBIC)) for image in images]
        # Draw all three numbers even when flip is off, so turning it off keeps the crops.
        span = self.load_size - self.crop_size + 1
        left, top = int(rng.integers(span)), int(rng.integers(span))
        mirror = bool(rng.random() < 0.5) and self.flip
        size = (self.load_size, self.load_size)
        out = []
        for image in images:
            array = np.asarray(image.resize(size, Image.BICUBIC))[top:top + self.crop_size, left:left + self.crop_size]
            out.append(to_tensor(array[:, ::-1] if mirror else array))
        return out


class CenterCropTransform:
    """DCGAN preprocessing: shorter side to image_size, centre crop, optional random horizontal flip."""

    def __init__(self, image_size: int = 64, flip: bool = False):
        self.image_size = check_positive_int("image_size", image_size)
        self.flip = flip

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        array = np.asarray(resize_center_crop(image, self.image_size))
        mirror = bool(rng.random() < 0.5) and self.flip
        return to_tensor(array[:, ::-1] if mirror else array)
