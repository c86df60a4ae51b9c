"""fastgan.ema.EMA: torch's exponential AveragedModel, without its device reads per update."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fastgan.ema import EMA


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2))


def _train_a_little(model: nn.Module, seed: int) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.1)
    model(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)))  # moves the BN statistics


def test_updates_equal_torchs_averaged_model():
    torch.manual_seed(0)
    model = _model()
    ours = EMA(model, 0.9)
    torchs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for seed in range(5):
        _train_a_little(model, seed)
        ours.update_parameters(model)
        torchs.update_parameters(model)
    assert ours.state_dict().keys() == torchs.state_dict().keys()
    for key, value in torchs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_no_device_value_is_read_after_the_first_update(monkeypatch):
    """Reading a tensor's value on the host is a sync on a GPU; after the first update there is none."""
    model = _model()
    ema = EMA(model, 0.99)
    ema.update_parameters(model)

    def no_host_read(self):
        raise AssertionError("the EMA update read a device value on the host")

    for read in ("__bool__", "__float__", "__int__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, read, no_host_read)
    for seed in range(3):
        _train_a_little(model, seed)
        ema.update_parameters(model)
    monkeypatch.undo()
    assert int(ema.n_averaged) == 4


@pytest.mark.parametrize("updates_before", [0, 2])
def test_a_loaded_state_continues_as_torchs_would(updates_before):
    """After load_state_dict the counter is read again: a fresh average copies, a resumed one averages."""
    torch.manual_seed(0)
    model = _model()
    source = EMA(model, 0.9)
    for seed in range(updates_before):
        _train_a_little(model, seed)
        source.update_parameters(model)
    resumed, reference = EMA(model, 0.9), AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9),
                                                          use_buffers=True)
    resumed.update_parameters(model)  # a started average, about to be overwritten by the load
    resumed.load_state_dict(source.state_dict())
    reference.load_state_dict(source.state_dict())
    _train_a_little(model, 7)
    resumed.update_parameters(model)
    reference.update_parameters(model)
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
