"""Images with captions, for text-to-image GANs (GAN-CLS).

The format: an image folder in which every image has a same-named .txt file holding
one caption per line (blank lines ignored), e.g. `birds/0001.jpg` + `birds/0001.txt`. A
missing or captionless .txt stops the run at start-up naming the file. Each sample is
{"image", "tokens" (one of its captions, drawn per (seed, epoch, index), as character
ids), "source" (which picture or class the caption describes: two samples with the same
source must not serve as each other's wrong caption)}.

Shipped captions (default_captions/): five hand-written ones per embedded photograph,
and attribute captions for each Fashion-MNIST class, built from its label.
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..text import normalize_caption, tokenize
from .base import SeededDataset, check_positive_int
from .datasets import image_mode
from .default import default_photo_names, load_photo
from .files import by_stem, list_images, listing, load_image
from .idx import IDXDataset, fashion_mnist
from .transforms import CenterCropTransform, to_tensor

CAPTION_FOLDER = "default_captions"
FASHION_MNIST_FOLDER = "fashion_mnist"
DEFAULT_PHOTO_SAMPLES = 512
MIN_CROP = 0.75  # embedded-photo crops keep at least this share of the shorter side, so the captions still hold


def parse_captions(text: str, source: str) -> list[str]:
    """The non-blank lines of a caption file; `source` names the file in the error."""
    captions = [normalize_caption(line) for line in text.splitlines() if line.strip()]
    if not captions:
        raise ValueError(f"caption file {source} holds no captions (expected one caption per line)")
    return captions


def read_captions(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file {path} not found (each image needs a same-named .txt file with "
                                f"one caption per line)")
    try:  # utf-8-sig: a byte-order mark (Windows editors write one) is no character of the first caption
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"caption file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                         f"save it as UTF-8") from None
    return parse_captions(text, str(path))


def shipped_captions(*parts: str) -> list[str]:
    """Captions of a file under fastgan/data/default_captions."""
    file = resources.files(__package__).joinpath(CAPTION_FOLDER, *parts)
    return parse_captions(file.read_text(encoding="utf-8"), f"fastgan/data/{CAPTION_FOLDER}/{'/'.join(parts)}")


def default_photo_stems() -> list[str]:
    """All nine embedded photographs: GAN-CLS has no held-out score, so it trains on every one."""
    return sorted(stem for split in ("train", "val", "test") for stem in default_photo_names(split))


def fashion_mnist_captions(label: int) -> list[str]:
    return shipped_captions(FASHION_MNIST_FOLDER, f"{label}.txt")


class _Captioned(SeededDataset):
    """Holds each source's captions as token rows and draws one per sample."""

    def __init__(self, captions: list[list[str]], caption_len: int, seed: int):
        super().__init__(seed)
        self.caption_len = check_positive_int("caption_len", caption_len)
        self.tokens = [tokenize(lines, caption_len) for lines in captions]

    def caption(self, source: int, rng: np.random.Generator) -> dict:
        rows = self.tokens[source]
        return {"tokens": rows[int(rng.integers(len(rows)))], "source": torch.tensor(source)}


class CaptionedImageFolder(_Captioned):
    """Every image of `root` with the captions of its same-named .txt file; resized + centre-cropped to
    image_size, optionally flipped. An undecodable image gives None (skipped and counted)."""

    def __init__(self, root: str | Path, image_size: int = 64, caption_len: int = 128, channels: int = 3,
                 flip: bool = False, seed: int = 0):
        self.files = list(by_stem(list_images(root, "captioned image folder")).values())
        missing = [str(p.with_suffix(".txt")) for p in self.files if not p.with_suffix(".txt").is_file()]
        if missing:
            raise FileNotFoundError(f"caption file(s) not found: {listing(missing)}; each image of {root} needs a "
                                    f"same-named .txt file with one caption per line")
        super().__init__([read_captions(p.with_suffix(".txt")) for p in self.files], caption_len, seed)
        self.mode = image_mode(channels)
        self.transform = CenterCropTransform(image_size, flip)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict | None:
        image = load_image(self.files[index], self.mode)
        if image is None:
            return None
        rng = self.rng(index)
        return {"image": self.transform(image, rng), **self.caption(index, rng)}


class DefaultCaptionedPhotos(_Captioned):
    """Random crops of the nine embedded photographs with their shipped captions.

    Per (seed, epoch, index): a photo, a square window of 75-100 % of its shorter side (so
    what the caption names stays in view), a position, a flip and one of its captions;
    the window is resized to image_size.
    """

    def __init__(self, image_size: int = 64, caption_len: int = 128, samples: int = DEFAULT_PHOTO_SAMPLES,
                 flip: bool = True, seed: int = 0):
        self.stems = default_photo_stems()
        super().__init__([shipped_captions(f"{stem}.txt") for stem in self.stems], caption_len, seed)
        self.image_size = check_positive_int("image_size", image_size)
        self.samples = check_positive_int("samples", samples)
        self.flip = flip
        self.photos = [load_photo(stem) for stem in self.stems]

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        source = int(rng.integers(len(self.photos)))
        photo = self.photos[source]
        shorter = min(photo.size)
        side = int(rng.integers(math.ceil(MIN_CROP * shorter), shorter + 1))
        left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
        crop = photo.crop((left, top, left + side, top + side)).resize((self.image_size,) * 2, Image.BICUBIC)
        if self.flip and rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return {"image": to_tensor(crop), **self.caption(source, rng)}


class CaptionedFashionMNIST(_Captioned):
    """Fashion-MNIST images, each with one of its class's attribute captions (the label is the source)."""

    def __init__(self, images: IDXDataset, caption_len: int = 128, seed: int = 0):
        if images.labels is None or images.classes is None:
            raise ValueError("CaptionedFashionMNIST needs a labelled IDXDataset with class names (fashion_mnist())")
        super().__init__([fashion_mnist_captions(label) for label in range(len(images.classes))], caption_len,
                         seed)
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.images.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        sample = self.images[index]
        return {"image": sample["image"], **self.caption(int(sample["label"]), self.rng(index))}


def build_caption_datasets(cfg):
    """(train, None) for model.family gancls: the embedded photos, a captioned folder or Fashion-MNIST."""
    d, m, seed = cfg.data, cfg.model, cfg.train.seed
    if d.dataset == "default":
        return DefaultCaptionedPhotos(d.crop_size, m.caption_len, flip=d.flip, seed=seed), None
    if d.dataset == "fashion_mnist":
        kwargs = dict(root=d.root) if d.root else {}
        images = fashion_mnist(split="train", image_size=d.crop_size, fit="pad" if d.crop_size <= 32 else "resize",
                               **kwargs)
        return CaptionedFashionMNIST(images, m.caption_len, seed), None
    root = Path(d.root)
    train_root = root / "train" if (root / "train").is_dir() else root
    return CaptionedImageFolder(train_root, d.crop_size, m.caption_len, m.channels, d.flip, seed), None
