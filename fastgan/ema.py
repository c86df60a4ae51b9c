"""The generator's exponential moving average (--optim.ema), without a device sync per update.

torch's AveragedModel reads its update counter on the host twice per update (n_averaged == 0,
n_averaged > 0): each a sync that stalls the queue of kernels the host runs ahead with
(benchmarks/README.md, "Host overhead"). This subclass reads it once, then keeps the answer;
the averaging is torch's own get_ema_multi_avg_fn and the state_dict AveragedModel's.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA(AveragedModel):
    """AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._started: bool | None = None  # n_averaged > 0, read from the device once

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._started = None  # the loaded counter decides again
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._started is None:
            self._started = bool(self.n_averaged > 0)
        if not self._started:  # the first update copies the model (torch's code, with its two reads, once)
            super().update_parameters(model)
            self._started = True
            return
        pairs = list(zip(itertools.chain(self.module.parameters(), self.module.buffers()),
                         (t.detach() for t in itertools.chain(model.parameters(), model.buffers())), strict=True))
        # torch's multi_avg_fn takes floats and counters (num_batches_tracked) in separate lists, as
        # AveragedModel groups them; the EMA's ignores the count it is passed.
        for floating in (True, False):
            group = [(a, c) for a, c in pairs if a.is_floating_point() == floating]
            if group:
                self.multi_avg_fn([a for a, _ in group], [c for _, c in group], self.n_averaged)
        self.n_averaged += 1
