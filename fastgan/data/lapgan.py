"""Training samples for one LAPGAN level: the real image at that level and the coarser one it is conditioned on.

Any dataset of {"image"[, "label"]} samples at full resolution becomes a level-k dataset:
its images go through the Gaussian pyramid, and a sample holds I_k ("image", the level's
own resolution) and, above level 0, upsample(I_{k-1}) ("coarse"), the input the level's
generator refines. The band the discriminator compares against is image - coarse.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..config import Config
from ..pyramid import gaussian_pyramid, upsample
from .base import check_positive_int
from .datasets import ClassFolderDataset, ImageFolderDataset
from .default import DefaultEdges2Photo
from .idx import fashion_mnist


class PyramidLevelDataset(Dataset):
    """Wraps `base` (samples with a full-resolution image under `key`) into samples of pyramid level `level`."""

    def __init__(self, base: Dataset, level: int, levels: int, key: str = "image"):
        check_positive_int("levels", levels)
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < levels:
            raise ValueError(f"level must be in [0, {levels}) for a {levels}-level pyramid; got {level!r}")
        self.base, self.level, self.levels, self.key = base, level, levels, key

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict | None:
        sample = self.base[index]
        if sample is None:
            return None  # unreadable file: skipped and counted by the trainer
        gaussian = gaussian_pyramid(sample[self.key][None], self.levels)
        out = {"image": gaussian[self.level][0]}
        if self.level > 0:
            out["coarse"] = upsample(gaussian[self.level - 1])[0]
        if "label" in sample:
            out["label"] = sample["label"]
        return out


def build_lapgan_datasets(cfg: Config) -> tuple[PyramidLevelDataset, PyramidLevelDataset | None]:
    """(train, validation or None) level datasets for model.level from the configured image source."""
    d, m, seed = cfg.data, cfg.model, cfg.train.seed
    wrap = dict(level=m.level, levels=m.levels)
    if d.dataset == "default":
        # The embedded photos' crops; their Canny edges go unused.
        return (PyramidLevelDataset(DefaultEdges2Photo("train", image_size=d.crop_size, seed=seed, flip=d.flip),
                                    key="B", **wrap), None)
    if d.dataset == "fashion_mnist":
        kwargs = dict(root=d.root) if d.root else {}
        fit = "pad" if d.crop_size <= 32 else "resize"  # 28x28 items, padded to 32 as for DCGAN
        return PyramidLevelDataset(fashion_mnist(split="train", image_size=d.crop_size, fit=fit, flip=d.flip,
                                                 seed=seed, **kwargs), **wrap), None
    cls = ImageFolderDataset if d.dataset == "folder" else ClassFolderDataset
    root = Path(d.root) / "train" if (Path(d.root) / "train").is_dir() else Path(d.root)
    return PyramidLevelDataset(cls(root, image_size=d.crop_size, channels=m.channels, flip=d.flip, seed=seed),
                               **wrap), None


__all__ = ["PyramidLevelDataset", "build_lapgan_datasets"]
