"""Swaps BatchNorm2d -> LeakyReLU/ReLU pairs in other people's models for the fused module."""
from __future__ import annotations

from torch import nn

from .batchnorm_act import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, adopt_norm_state


def _fused_like(norm: nn.Module, act: nn.Module, inplace: bool) -> BatchNormLeakyReLU2d:
    slope = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0
    cls = SyncBatchNormLeakyReLU2d if isinstance(norm, nn.SyncBatchNorm) else BatchNormLeakyReLU2d
    extra = {"process_group": norm.process_group} if cls is SyncBatchNormLeakyReLU2d else {}
    fused = cls(norm.num_features, slope, norm.eps, norm.momentum, norm.affine, norm.track_running_stats,
                inplace and slope > 0, **extra)
    adopt_norm_state(fused, norm)
    return fused


def _is_norm(module: nn.Module) -> bool:
    return type(module) in (nn.BatchNorm2d, nn.SyncBatchNorm)


def _is_act(module: nn.Module) -> bool:
    return type(module) in (nn.LeakyReLU, nn.ReLU)


def fuse_bn_act(model: nn.Module, inplace: bool = False) -> int:
    """Fuses every BatchNorm2d (or SyncBatchNorm) directly followed by LeakyReLU/ReLU
    inside an nn.Sequential, in place, and returns how many pairs it fused.

    The norm's slot gets the fused module (same weights, buffers and state_dict keys)
    and the activation's slot an nn.Identity, so the keys of everything after it stay
    where they were. Pairs split across forward() code cannot be seen and are left alone.
    inplace=True makes the fused LeakyReLU layers in-place (ReLU ones cannot be).
    """
    fused = 0
    for sequential in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in zip(names, names[1:]):
            norm, act = sequential._modules[first], sequential._modules[second]
            if _is_norm(norm) and _is_act(act):
                sequential._modules[first] = _fused_like(norm, act, inplace)
                sequential._modules[second] = nn.Identity()
                fused += 1
    return fused
