"""The order in which a rank visits the dataset, resumable mid-epoch.

torch's DistributedSampler cannot start in the middle of an epoch, which an exact
resume needs. This one is a pure function of (seed, epoch, rank, world size, start
batch): the permutation is drawn from its own generator, so it neither reads nor
advances the global RNG that dropout and noise draw from.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedSampler(Sampler[int]):
    """Shuffled indices for one rank, `batch_size` per step, whole batches only.

    Every rank gets `steps_per_epoch * batch_size` indices, disjoint across ranks; the
    tail that does not fill a global batch is dropped (a different tail each epoch).
    """

    def __init__(self, dataset_len: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, seed: int = 0):
        if dataset_len < batch_size * world_size:
            raise ValueError(f"the dataset has {dataset_len} samples, fewer than one global batch "
                             f"({batch_size} per process x {world_size} processes)")
        self.dataset_len, self.batch_size = dataset_len, batch_size
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed = shuffle, seed
        self.epoch, self.start_batch = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_len // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip the batches already trained on."""
        if not 0 <= start_batch <= self.steps_per_epoch:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.steps_per_epoch}]")
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        per_rank = self.steps_per_epoch * self.batch_size
        mine = order[self.rank:per_rank * self.world_size:self.world_size]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_batch) * self.batch_size
