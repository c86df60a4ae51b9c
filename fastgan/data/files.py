"""Finding image files and decoding them without letting one bad file end a run."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_LISTED = 5
# PIL's modes for one channel of more than 8 bits (16-bit PNG greyscale opens as I;16 or I).
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UnreadableImageWarning(UserWarning):
    """An image file could not be decoded and its sample was skipped."""


_warned_paths: set[str] = set()


def is_image_file(path: Path) -> bool:
    # Dot-files are skipped: they are OS metadata (macOS "._x.jpg"), never images.
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | Path, what: str = "image folder") -> list[Path]:
    """The image files directly inside `folder`, sorted by name so every process sees one order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise ValueError(f"{what} {folder} holds no images (looked for {' '.join(IMAGE_EXTENSIONS)}, any case)")
    return files


def by_stem(files: list[Path]) -> dict[str, Path]:
    """Maps file stem -> path; two files sharing a stem would make pairing ambiguous."""
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem]} and {path} have the same stem {path.stem!r}; "
                             "pairs are matched by stem, so keep only one")
        stems[path.stem] = path
    return stems


def listing(names: list[str]) -> str:
    """The first few names of a list, for error messages about many files."""
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")


# What PIL raises for a file that is not a readable image (missing, truncated, corrupt, unknown format).
# DecompressionBombError is no OSError: PIL raises it from the header alone, for a size over twice
# Image.MAX_IMAGE_PIXELS, which one damaged byte in a BMP or WebP header is enough to claim.
DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)


def image_size(source: Path | BinaryIO) -> tuple[int, int] | None:
    """(width, height) of an image file (a path, or bytes already read as a file object) from the
    header alone, or None when even the header is unreadable."""
    try:
        with Image.open(source) as image:
            return image.size
    except DECODE_ERRORS:
        return None


def eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (value / 257, rounded: 65535 -> 255), as DALI decodes it.
    PIL's convert would clip every value above 255 instead, turning such an image nearly white."""
    if image.mode not in WIDE_GREY_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8), "L")


def decode_image(path: Path, mode: str = "RGB") -> Image.Image:
    """The fully decoded image in `mode`; raises one of DECODE_ERRORS when it cannot be read."""
    with Image.open(path) as image:
        return eight_bit(image).convert(mode)


def load_image(path: Path, mode: str = "RGB") -> Image.Image | None:
    """The decoded image in `mode`, or None (with one warning per file) when it cannot be decoded."""
    try:
        return decode_image(path, mode)
    except DECODE_ERRORS as error:
        if str(path) not in _warned_paths:
            _warned_paths.add(str(path))
            warnings.warn(f"skipping unreadable image {path}: {error}", UnreadableImageWarning, stacklevel=2)
        return None
