"""Super-resolution pairs: random high-resolution crops of photos and their bicubic downscales.

The low-resolution input is made on the fly from the 8-bit crop with PIL's bicubic filter
(antialiased when shrinking, a = -0.5 like MATLAB's imresize), so any photo folder is a
training set. Crops are taken at the photo's own resolution: resizing the target first
would blur exactly the detail the network should learn to restore. Batches hold
{"lr": [3, crop/scale, crop/scale], "hr": [3, crop, crop]} in [-1, 1].
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SeededDataset, check_positive_int
from .default import DEFAULT_SAMPLES, load_photo, default_photo_names
from .files import list_images, load_image
from .transforms import to_tensor


class TooSmallImageWarning(UserWarning):
    """A photo is smaller than the crop and its sample was skipped."""


_warned_small: set[str] = set()


def check_crop_and_scale(crop_size: int, scale: int) -> None:
    check_positive_int("crop_size", crop_size)
    check_positive_int("scale", scale)
    if crop_size % scale:
        raise ValueError(f"crop_size ({crop_size}) must be a multiple of scale ({scale})")


def downscale(hr: Image.Image, scale: int) -> Image.Image:
    """The bicubic low-resolution version of an image whose sides are multiples of scale."""
    return hr.resize((hr.width // scale, hr.height // scale), Image.BICUBIC)


def superres_pair(hr: Image.Image, scale: int, mirror: bool = False) -> dict:
    """{"lr", "hr"} tensors of one high-resolution image (sides multiples of scale), optionally mirrored."""
    if mirror:
        hr = hr.transpose(Image.FLIP_LEFT_RIGHT)
    return {"lr": to_tensor(downscale(hr, scale)), "hr": to_tensor(hr)}


class _CropPairs(SeededDataset):
    """Shared crop logic: random window + flip when training, the centre window otherwise."""

    def __init__(self, crop_size: int, scale: int, flip: bool, train: bool, seed: int):
        super().__init__(seed)
        check_crop_and_scale(crop_size, scale)
        self.crop_size, self.scale, self.flip, self.train = crop_size, scale, flip, train

    def crop_pair(self, photo: Image.Image, rng: np.random.Generator) -> dict:
        span_x, span_y = photo.width - self.crop_size + 1, photo.height - self.crop_size + 1
        # Draw all three numbers even when flip is off, so turning it off keeps the crops.
        left, top, coin = int(rng.integers(span_x)), int(rng.integers(span_y)), rng.random()
        if not self.train:
            left, top = (span_x - 1) // 2, (span_y - 1) // 2
        hr = photo.crop((left, top, left + self.crop_size, top + self.crop_size))
        return superres_pair(hr, self.scale, mirror=self.train and self.flip and coin < 0.5)


class SuperResolutionFolder(_CropPairs):
    """One crop per image file of `root` per epoch; files are decoded when sampled.

    A file that cannot be decoded, or is smaller than the crop, gives None (skipped and
    counted by the trainer) with one warning naming it.
    """

    def __init__(self, root: str | Path, crop_size: int = 96, scale: int = 4, flip: bool = True, train: bool = True,
                 seed: int = 0):
        super().__init__(crop_size, scale, flip, train, seed)
        self.files = list_images(root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict | None:
        path = self.files[index]
        photo = load_image(path)
        if photo is None:
            return None
        if min(photo.size) < self.crop_size:
            if str(path) not in _warned_small:
                _warned_small.add(str(path))
                warnings.warn(f"skipping {path}: {photo.width}x{photo.height} is smaller than the "
                              f"{self.crop_size}x{self.crop_size} crop", TooSmallImageWarning, stacklevel=2)
            return None
        return {**self.crop_pair(photo, self.rng(index)), "name": path.stem}


class DefaultSuperResolution(_CropPairs):
    """Crops of the embedded photos, split by photograph as DefaultEdges2Photo is (val: coffee, test: chelsea).

    Training crops are drawn anew each epoch from (seed, epoch, index): photo, position and
    flip. Validation and test crops are random too but fixed by (seed, index), since
    centre crops of one photo would all be the same.
    """

    def __init__(self, split: str = "train", crop_size: int = 96, scale: int = 4, samples: int | None = None,
                 flip: bool = True, seed: int = 0):
        super().__init__(crop_size, scale, flip, train=True, seed=seed)
        self.split = split
        self.stems = default_photo_names(split)
        self.samples = check_positive_int("samples", DEFAULT_SAMPLES[split] if samples is None else samples)
        self.flip = flip and split == "train"
        self.photos = [load_photo(stem) for stem in self.stems]
        smallest = min(min(photo.size) for photo in self.photos)
        if crop_size > smallest:
            raise ValueError(f"crop_size {crop_size} is larger than the smallest embedded photo side ({smallest})")

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index) if self.split == "train" else np.random.default_rng([self.seed, index])
        choice = int(rng.integers(len(self.photos)))
        return {**self.crop_pair(self.photos[choice], rng), "name": f"{self.stems[choice]}_{index:04d}"}
