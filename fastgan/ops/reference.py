"""Pure-PyTorch implementations of every fastgan operator.

They define what the kernels must compute (docs/operators.md), serve as the fallback
when no compiled library can be loaded, and get their gradients from autograd. They
return what the public functions in fastgan.ops return.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _per_channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


def bn_stats(x):
    var, mean = torch.var_mean(x.to(stat_dtype(x)), dim=(0, 2, 3), correction=0)
    return mean, var


def _normalize(x, mean, invstd, weight, bias):
    z = (x.to(stat_dtype(x)) - _per_channel(mean)) * _per_channel(invstd)
    if weight is not None:
        z = z * _per_channel(weight)
    if bias is not None:
        z = z + _per_channel(bias)
    return z


def _act(z, negative_slope):
    """LeakyReLU; slope 0 is ReLU, whose -inf gives 0 (leaky_relu's -inf * 0 would be nan)."""
    return torch.relu(z) if negative_slope == 0 else F.leaky_relu(z, negative_slope)


def bn_act_apply(x, mean, invstd, weight, bias, negative_slope, save_output=False):
    return _act(_normalize(x, mean, invstd, weight, bias), negative_slope).to(x.dtype)


def bn_act_train(x, weight, bias, eps, negative_slope, save_output=False):
    mean, var = bn_stats(x)
    out = bn_act_apply(x, mean, torch.rsqrt(var + eps), weight, bias, negative_slope)
    return out, mean.detach(), var.detach()


def _dz_xhat(grad_out, saved, mean, invstd, weight, bias, negative_slope, saved_is_output):
    sd = stat_dtype(saved)
    grad_out, saved = grad_out.to(sd), saved.to(sd)
    w = _per_channel(weight) if weight is not None else 1.0
    b = _per_channel(bias) if bias is not None else 0.0
    if saved_is_output:
        positive = saved > 0
        z = torch.where(positive, saved, saved / negative_slope)
        xhat = (z - b) / w
    else:
        xhat = (saved - _per_channel(mean)) * _per_channel(invstd)
        positive = xhat * w + b > 0
    masked = torch.zeros_like(grad_out) if negative_slope == 0 else grad_out * negative_slope  # ReLU: 0, even for inf
    dz = torch.where(positive, grad_out, masked)
    return dz, xhat


def bn_act_backward_reduce(grad_out, saved, mean, invstd, weight, bias, negative_slope, saved_is_output):
    dz, xhat = _dz_xhat(grad_out, saved, mean, invstd, weight, bias, negative_slope, saved_is_output)
    return dz.sum(dim=(0, 2, 3)), (dz * xhat).sum(dim=(0, 2, 3))


def bn_act_backward_input(grad_out, saved, mean, invstd, weight, bias, mean_dz, mean_dz_xhat,
                          negative_slope, saved_is_output):
    dz, xhat = _dz_xhat(grad_out, saved, mean, invstd, weight, bias, negative_slope, saved_is_output)
    scale = _per_channel(invstd) * (_per_channel(weight) if weight is not None else 1.0)
    grad = (dz - _per_channel(mean_dz) - xhat * _per_channel(mean_dz_xhat)) * scale
    return grad.to(saved.dtype)


def _mean_term(logits, mode, target, real: bool):
    x = logits.to(stat_dtype(logits))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(x, torch.full_like(x, target))
    if mode == "lsgan":
        return F.mse_loss(x, torch.full_like(x, target))
    if mode == "hinge":
        return F.relu(1.0 - x).mean() if real else F.relu(1.0 + x).mean()
    return -x.mean() if real else x.mean()  # wgan


def gan_d_loss(real_logits, fake_logits, mode, target_real, target_fake):
    return (_mean_term(real_logits, mode, target_real, real=True)
            + _mean_term(fake_logits, mode, target_fake, real=False))


def gan_g_loss(fake_logits, mode, target_real):
    if mode in ("hinge", "wgan"):
        return -fake_logits.to(stat_dtype(fake_logits)).mean()
    return _mean_term(fake_logits, mode, target_real, real=True)
