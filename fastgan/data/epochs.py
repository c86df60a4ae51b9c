"""The epoch travels with each index, so persistent DataLoader workers follow set_epoch.

A persistent worker keeps its own copy of the dataset for the whole run and never sees
the trainer's `dataset.set_epoch(epoch)`; it would repeat epoch 0's crops and flips
forever. The sampler runs in the training process, so tagging each index there with
the epoch it was drawn for lets every worker bring its copy up to date per sample.
"""
from __future__ import annotations

from torch.utils.data import Dataset, Sampler

from .sampler import ShardedSampler


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """`sampler`'s indices as (epoch, index) pairs; same order, length and mid-epoch start."""

    def __init__(self, sampler: ShardedSampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochTaggedDataset(Dataset):
    """Reads (epoch, index) pairs: sets `base`'s epoch (if it has one), then returns `base[index]`."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, tagged: tuple[int, int]):
        epoch, index = tagged
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)  # an assignment: cheaper than tracking whether it changed
        return self.base[index]
