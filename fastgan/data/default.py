"""The embedded default dataset: edges -> photo pairs cut from nine photographs shipped with fastgan.

It lets `python -m fastgan.train` run with no download and no configuration. The split
is by photograph (SOURCES.md), so validation and test crops come from photos never seen
in training. Everything is built in memory at construction, in well under a second.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
from PIL import Image

from .base import SeededDataset, check_choice, check_positive_int
from .edges import canny_edges, check_canny_args
from .transforms import to_tensor

SPLITS = ("train", "val", "test")
HELD_OUT_PHOTOS = {"coffee": "val", "chelsea": "test"}  # photo stem -> split; the rest train
DEFAULT_SAMPLES = {"train": 512, "val": 64, "test": 64}
PHOTO_FOLDER = "default_photos"


def default_photo_names(split: str) -> list[str]:
    """Stems of the photographs of one split; train is every photo not held out."""
    check_choice("split", split, SPLITS)
    folder = resources.files(__package__) / PHOTO_FOLDER
    stems = sorted(entry.name.rsplit(".", 1)[0] for entry in folder.iterdir() if entry.name.endswith(".jpg"))
    return [stem for stem in stems if HELD_OUT_PHOTOS.get(stem, "train") == split]


def load_photo(stem: str) -> Image.Image:
    with (resources.files(__package__) / PHOTO_FOLDER / f"{stem}.jpg").open("rb") as file:
        return Image.open(file).convert("RGB")


class DefaultEdges2Photo(SeededDataset):
    """Random square crops of the split's photos (B) and their Canny edges (A), image_size x image_size.

    The crop windows are fixed by `seed`: side uniform between image_size and the photo's
    shorter side, position uniform, photo uniform. Defaults (Canny 100/200 after a 3x3 blur,
    black edges on white) give clean line drawings at 64 px. Only the train split flips,
    per (seed, epoch, index) like every other dataset.
    """

    def __init__(self, split: str = "train", image_size: int = 64, samples: int | None = None, seed: int = 0,
                 flip: bool = True, low: float = 100, high: float = 200, blur: int = 3, invert: bool = True):
        super().__init__(seed)
        stems = default_photo_names(split)
        check_positive_int("image_size", image_size)
        samples = check_positive_int("samples", DEFAULT_SAMPLES[split] if samples is None else samples)
        check_canny_args(low, high, blur)
        self.split = split
        self.flip = flip and split == "train"
        photos = [load_photo(stem) for stem in stems]
        for stem, photo in zip(stems, photos):
            if image_size > min(photo.size):
                raise ValueError(f"image_size {image_size} is larger than default photo {stem!r} "
                                 f"({photo.width}x{photo.height}); use at most {min(min(p.size) for p in photos)}")
        rng = np.random.default_rng(seed)
        self.windows: list[tuple[str, int, int, int]] = []  # (photo stem, left, top, side)
        self.a = np.empty((samples, image_size, image_size, 3), np.uint8)
        self.b = np.empty_like(self.a)
        for index in range(samples):
            choice = int(rng.integers(len(photos)))
            photo = photos[choice]
            side = int(rng.integers(image_size, min(photo.size) + 1))
            left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
            crop = photo.crop((left, top, left + side, top + side)).resize((image_size, image_size), Image.BICUBIC)
            self.b[index] = np.asarray(crop)
            self.a[index] = canny_edges(self.b[index], low, high, blur, invert)
            self.windows.append((stems[choice], left, top, side))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        a, b = self.a[index], self.b[index]
        if self.flip and self.rng(index).random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        return {"A": to_tensor(a), "B": to_tensor(b), "name": f"{self.windows[index][0]}_{index:04d}"}
