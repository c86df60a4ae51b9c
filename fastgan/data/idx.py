"""The IDX format of MNIST and Fashion-MNIST, and datasets read from it.

An IDX file is a 4-byte magic number (two zero bytes, an element type code, the number
of dimensions), one big-endian uint32 per dimension, then the elements, big-endian.
Files are read whole (60,000 28x28 images are 47 MB) plain or gzip-compressed.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import SeededDataset, check_choice, check_positive_int
from .transforms import to_tensor

IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist installs
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FITS = ("pad", "resize")


def read_idx(path: str | Path) -> np.ndarray:
    """The array an IDX file holds (plain or gzip, told apart by content), in native byte order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"IDX file {path} is a damaged gzip file: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        codes = " ".join(f"{code:#04x}" for code in IDX_TYPES)
        raise ValueError(f"{path} is not an IDX file: bad magic number {raw[:4].hex(' ')!r} (expected 00 00, "
                         f"a type code among {codes}, then the number of dimensions)")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated: {len(raw)} bytes, shorter than its "
                         f"{ndim}-dimension header ({header} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(f"IDX file {path} is {problem}: shape {shape} of {dtype.name} needs {expected} bytes, "
                         f"it has {len(raw)}")
    return np.frombuffer(raw, dtype, count, header).reshape(shape).astype(dtype.newbyteorder("="))


class IDXDataset(SeededDataset):
    """Grayscale images (N x H x W uint8) from an IDX file, with optional integer labels from a second one.

    fit="pad" centres each image on a black image_size square (28 -> 32, as LeNet and many
    MNIST GANs do); fit="resize" scales it bicubically to image_size.
    """

    def __init__(self, images_path: str | Path, labels_path: str | Path | None = None, image_size: int = 32,
                 fit: str = "pad", flip: bool = False, seed: int = 0, classes: list[str] | None = None):
        super().__init__(seed)
        self.image_size = check_positive_int("image_size", image_size)
        check_choice("fit", fit, FITS)
        self.fit, self.flip = fit, flip
        self.images = read_idx(images_path)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"IDX images file {images_path} holds {self.images.dtype.name} of shape "
                             f"{self.images.shape}; expected uint8 of shape (N, height, width)")
        height, width = self.images.shape[1:]
        if fit == "pad" and image_size < max(height, width):
            raise ValueError(f"image_size {image_size} is smaller than the {height}x{width} images of "
                             f"{images_path}, so they cannot be padded; use fit='resize'")
        self.labels = None
        if labels_path is not None:
            labels = read_idx(labels_path)
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                raise ValueError(f"IDX labels file {labels_path} holds {labels.dtype.name} of shape "
                                 f"{labels.shape}; expected integers of shape (N,)")
            if len(labels) != len(self.images):
                raise ValueError(f"IDX labels file {labels_path} has {len(labels)} labels but images file "
                                 f"{images_path} has {len(self.images)} images")
            self.labels = labels.astype(np.int64)
        self.classes = classes

    def __len__(self) -> int:
        return len(self.images)

    def _fitted(self, image: np.ndarray) -> np.ndarray:
        if self.fit == "resize":
            return np.asarray(Image.fromarray(image).resize((self.image_size, self.image_size), Image.BICUBIC))
        size = self.image_size
        return np.pad(image, [((size - n) // 2, size - n - (size - n) // 2) for n in image.shape])

    def __getitem__(self, index: int) -> dict:
        image = self._fitted(self.images[index])
        if self.flip and self.rng(index).random() < 0.5:
            image = image[:, ::-1]
        sample = {"image": to_tensor(image)}
        if self.labels is not None:
            sample["label"] = torch.tensor(self.labels[index])
        return sample


def fashion_mnist(root: str | Path = FASHION_MNIST_ROOT, split: str = "train", image_size: int = 32,
                  fit: str = "pad", flip: bool = False, seed: int = 0) -> IDXDataset:
    """Fashion-MNIST (10 classes, 60,000 train / 10,000 test 28x28 images) from the files of Debian's
    dataset-fashion-mnist package, or the same files (gzipped or not) in another folder."""
    check_choice("split", split, tuple(FASHION_MNIST_FILES))
    root = Path(root)
    paths = []
    for name in FASHION_MNIST_FILES[split]:
        found = [root / f"{name}.gz", root / name]
        path = next((p for p in found if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"Fashion-MNIST {split} file {found[0]} not found (nor {found[1].name}); "
                                    f"install it with `apt-get install dataset-fashion-mnist` (files land in "
                                    f"{FASHION_MNIST_ROOT}) or give --data.root the folder that holds them")
        paths.append(path)
    return IDXDataset(paths[0], paths[1], image_size, fit, flip, seed, classes=list(FASHION_MNIST_CLASSES))
