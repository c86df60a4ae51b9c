"""Swaps BatchNorm2d -> LeakyReLU/ReLU pairs in other people's models for the fused module."""
from __future__ import annotations

import warnings
from collections import Counter

from torch import nn

from .batchnorm_act import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, adopt_norm_state


def _slope(act: nn.Module) -> float:
    return act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0


def _has_zero_weight(norm: nn.Module) -> bool:
    """In-place mode recovers the normalized input by dividing by the weight: a channel whose weight
    is zero (pruned, or zero-initialized) would get NaN gradients, which then spread to every weight."""
    weight = norm.weight
    return weight is not None and not weight.is_meta and bool(weight.eq(0).any())


def _fused_like(norm: nn.Module, act: nn.Module, inplace: bool) -> BatchNormLeakyReLU2d:
    slope = _slope(act)
    cls = SyncBatchNormLeakyReLU2d if isinstance(norm, nn.SyncBatchNorm) else BatchNormLeakyReLU2d
    extra = {"process_group": norm.process_group} if cls is SyncBatchNormLeakyReLU2d else {}
    fused = cls(norm.num_features, slope, norm.eps, norm.momentum, norm.affine, norm.track_running_stats,
                inplace and slope > 0, bias=norm.bias is not None, **extra)
    adopt_norm_state(fused, norm)
    return fused


def _is_norm(module: nn.Module) -> bool:
    return type(module) in (nn.BatchNorm2d, nn.SyncBatchNorm)


def _is_act(module: nn.Module) -> bool:
    return type(module) in (nn.LeakyReLU, nn.ReLU)


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _references(model: nn.Module) -> Counter:
    """How many module slots hold each module (by id): a norm held twice has an alias."""
    return Counter(id(child) for module in model.modules() for child in module._modules.values()
                   if child is not None)


def _why_not(sequential: nn.Sequential, index: int, references: Counter) -> str | None:
    """Why the pair at index, index + 1 cannot be swapped without changing what the model does."""
    norm, act = sequential[index], sequential[index + 1]
    if type(sequential).forward is not nn.Sequential.forward:
        return f"{type(sequential).__name__} has its own forward(), which may use the layers otherwise"
    if _has_hooks(norm) or _has_hooks(act):
        return "a hook is registered on the norm or the activation"
    if references[id(norm)] > 1:
        return "the norm is also held under another name"
    if isinstance(norm, nn.SyncBatchNorm) and not (
            index > 0 and type(sequential[index - 1]) in (nn.Conv2d, nn.ConvTranspose2d)):
        return ("a SyncBatchNorm may stand for BatchNorm1d/3d; it is fused only right after a Conv2d or "
                "ConvTranspose2d (or fuse before torch's convert_sync_batchnorm)")
    return None


def fuse_bn_act(model: nn.Module, inplace: bool = False) -> int:
    """Fuses every BatchNorm2d (or SyncBatchNorm) directly followed by LeakyReLU/ReLU
    inside an nn.Sequential, in place, and returns how many pairs it fused.

    The norm's slot gets the fused module (same weights, buffers and state_dict keys)
    and the activation's slot an nn.Identity, so the keys of everything after it stay
    where they were. Pairs split across forward() code cannot be seen and are left alone.
    A pair whose swap could change what the model computes is left alone too, with one
    warning naming each and why: inside a Sequential subclass with its own forward(), with
    hooks, with the norm also held under another name, or a SyncBatchNorm whose input may
    not be 4-D. inplace=True makes the fused LeakyReLU layers in-place (ReLU ones cannot be,
    nor, with a warning naming them, norms with a zero weight, which in-place mode divides by).
    """
    references = _references(model)
    fused, skipped, out_of_place = 0, [], []
    for name, sequential in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for index, (first, second) in enumerate(zip(names, names[1:])):
            norm, act = sequential._modules[first], sequential._modules[second]
            if not (_is_norm(norm) and _is_act(act)):
                continue
            label = f"{f'{name}.' if name else ''}{first}"
            reason = _why_not(sequential, index, references)
            if reason is not None:
                skipped.append(f"{label} ({reason})")
                continue
            zero_weight = inplace and _slope(act) > 0 and _has_zero_weight(norm)
            if zero_weight:
                out_of_place.append(label)
            sequential._modules[first] = _fused_like(norm, act, inplace and not zero_weight)
            sequential._modules[second] = nn.Identity()
            fused += 1
    if skipped:
        warnings.warn(f"fuse_bn_act left {len(skipped)} pair(s) unfused: {'; '.join(skipped)}", stacklevel=2)
    if out_of_place:
        warnings.warn(f"fuse_bn_act fused {len(out_of_place)} pair(s) out-of-place, not in-place: "
                      f"{', '.join(out_of_place)} (a weight of zero, which in-place mode would divide by)",
                      stacklevel=2)
    return fused
