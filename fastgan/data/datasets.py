"""Image datasets read from folders: aligned A|B pairs, paired A/ B/ folders, single images, class folders.

Structural problems (missing or empty folders, unpaired files, malformed A|B images, pairs
of different sizes) fail at construction with the offending path; a file that cannot be
decoded is only found when loaded, and then its sample is None (see collate.collate_skipping).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .base import SeededDataset, check_choice
from .files import by_stem, image_size, is_image_file, list_images, listing, load_image
from .transforms import CenterCropTransform, PairedTransform

DIRECTIONS = ("AtoB", "BtoA")


def check_aligned_sizes(files: list[Path]) -> None:
    """A|B images are two square halves side by side; anything else would split into misaligned halves."""
    for path in files:
        size = image_size(path)
        if size is None:
            continue  # undecodable: skipped with a warning when loaded
        width, height = size
        if width != 2 * height:
            raise ValueError(f"aligned image {path} is {width}x{height}; an A|B image holds two square "
                             f"halves side by side, so its width must be even and twice its height")


def _check_paired_sizes(pairs: list[tuple[Path, Path]]) -> None:
    """Both images of a pair must share a size, or one crop window cannot fit both; read from headers."""
    mismatched = []
    for a_path, b_path in pairs:
        a_size, b_size = image_size(a_path), image_size(b_path)
        if a_size is not None and b_size is not None and a_size != b_size:
            mismatched.append(f"{a_path} is {a_size[0]}x{a_size[1]}, {b_path} is {b_size[0]}x{b_size[1]}")
    if mismatched:
        raise ValueError(f"{len(mismatched)} paired image(s) differ in size: {listing(mismatched)}")


class _PairedImages(SeededDataset):
    """What the two pix2pix formats share: the direction and one transform for both images."""

    def __init__(self, direction: str, load_size: int, crop_size: int, flip: bool, train: bool, seed: int):
        super().__init__(seed)
        check_choice("direction", direction, DIRECTIONS)
        self.direction = direction
        self.transform = PairedTransform(load_size, crop_size, flip, train)

    def _sample(self, a, b, index: int, name: str) -> dict:
        if self.direction == "BtoA":
            a, b = b, a
        a, b = self.transform([a, b], self.rng(index))
        return {"A": a, "B": b, "name": name}


class AlignedDataset(_PairedImages):
    """Images holding A|B side by side, the format of the public pix2pix datasets (facades, edges2shoes ...)."""

    def __init__(self, root: str | Path, direction: str = "AtoB", load_size: int = 286, crop_size: int = 256,
                 flip: bool = True, train: bool = True, seed: int = 0):
        super().__init__(direction, load_size, crop_size, flip, train, seed)
        self.files = list_images(root, "aligned image folder")
        check_aligned_sizes(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict | None:
        path = self.files[index]
        image = load_image(path)
        if image is None:
            return None
        half = image.width // 2
        a, b = image.crop((0, 0, half, image.height)), image.crop((half, 0, 2 * half, image.height))
        return self._sample(a, b, index, path.stem)


class PairedFolderDataset(_PairedImages):
    """root/A/ and root/B/ holding the two images of each pair under the same file stem."""

    def __init__(self, root: str | Path, direction: str = "AtoB", load_size: int = 286, crop_size: int = 256,
                 flip: bool = True, train: bool = True, seed: int = 0):
        super().__init__(direction, load_size, crop_size, flip, train, seed)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"paired dataset folder {root} does not exist or is not a folder")
        a_files = by_stem(list_images(root / "A", "paired dataset folder"))
        b_files = by_stem(list_images(root / "B", "paired dataset folder"))
        for have, have_dir, other, other_dir in ((a_files, root / "A", b_files, root / "B"),
                                                  (b_files, root / "B", a_files, root / "A")):
            unpaired = sorted(set(have) - set(other))
            if unpaired:
                raise ValueError(f"{len(unpaired)} file(s) in {have_dir} have no same-stem file in {other_dir}: "
                                 f"{listing([have[stem].name for stem in unpaired])}")
        self.pairs = [(a_files[stem], b_files[stem]) for stem in sorted(a_files)]
        _check_paired_sizes(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict | None:
        a_path, b_path = self.pairs[index]
        a, b = load_image(a_path), load_image(b_path)
        if a is None or b is None:
            return None
        return self._sample(a, b, index, a_path.stem)


def image_mode(channels: int) -> str:
    check_choice("channels", channels, (1, 3))
    return "L" if channels == 1 else "RGB"


class ImageFolderDataset(SeededDataset):
    """Unlabelled images directly inside root (DCGAN): shorter side to image_size, centre crop, optional flip."""

    def __init__(self, root: str | Path, image_size: int = 64, channels: int = 3, flip: bool = False, seed: int = 0):
        super().__init__(seed)
        self.mode = image_mode(channels)
        self.transform = CenterCropTransform(image_size, flip)
        self.files = list_images(root)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict | None:
        image = load_image(self.files[index], self.mode)
        if image is None:
            return None
        return {"image": self.transform(image, self.rng(index))}


class ClassFolderDataset(SeededDataset):
    """root/<class>/<image>: one sub-folder per class, classes numbered in sorted name order."""

    def __init__(self, root: str | Path, image_size: int = 64, channels: int = 3, flip: bool = False, seed: int = 0):
        super().__init__(seed)
        self.mode = image_mode(channels)
        self.transform = CenterCropTransform(image_size, flip)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"class folder dataset {root} does not exist or is not a folder")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            stray = [p.name for p in root.iterdir() if is_image_file(p)]
            hint = f" (it holds images directly: {listing(stray)}; use ImageFolderDataset)" if stray else ""
            raise ValueError(f"class folder dataset {root} has no class sub-folders{hint}")
        self.classes = [folder.name for folder in folders]
        self.samples = [(path, label) for label, folder in enumerate(folders)
                        for path in list_images(folder, f"class {folder.name!r} folder")]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict | None:
        path, label = self.samples[index]
        image = load_image(path, self.mode)
        if image is None:
            return None
        return {"image": self.transform(image, self.rng(index)), "label": torch.tensor(label, dtype=torch.int64)}
