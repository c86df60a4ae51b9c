"""register_fake for the compiled operators.

Fakes give torch.compile the exact shapes, dtypes and strides the kernels produce. The
autograd formulas are C++ (csrc/autograd.cpp), so a training step pays no Python per
operator call (docs/operators.md).
"""
from __future__ import annotations

import torch

from .layout import kernel_layout
from .reference import stat_dtype


def _empty_like_kernel(x: torch.Tensor) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=kernel_layout(x))


def _channel_vector(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[1],), dtype=stat_dtype(x))


@torch.library.register_fake("fastgan::bn_stats")
def _bn_stats_fake(x):
    return _channel_vector(x), _channel_vector(x)


@torch.library.register_fake("fastgan::bn_act_apply")
def _bn_act_apply_fake(x, mean, invstd, weight, bias, negative_slope, save_output):
    return _empty_like_kernel(x)


@torch.library.register_fake("fastgan::bn_act_train")
def _bn_act_train_fake(x, weight, bias, eps, negative_slope, save_output):
    return _empty_like_kernel(x), _channel_vector(x), _channel_vector(x), _channel_vector(x)


@torch.library.register_fake("fastgan::bn_act_backward_reduce")
def _bn_act_backward_reduce_fake(grad_out, saved, mean, invstd, weight, bias, negative_slope,
                                 saved_is_output):
    return _channel_vector(saved), _channel_vector(saved)


@torch.library.register_fake("fastgan::bn_act_backward_input")
def _bn_act_backward_input_fake(grad_out, saved, mean, invstd, weight, bias, mean_dz, mean_dz_xhat,
                                negative_slope, saved_is_output):
    return _empty_like_kernel(saved)


def _loss_and_grad_fake(logits):
    return logits.new_empty((), dtype=stat_dtype(logits)), logits.new_empty(logits.shape)


@torch.library.register_fake("fastgan::gan_d_loss")
def _gan_d_loss_fake(real_logits, fake_logits, mode, target_real, target_fake):
    loss, grad_real = _loss_and_grad_fake(real_logits)
    return loss, grad_real, fake_logits.new_empty(fake_logits.shape)


@torch.library.register_fake("fastgan::gan_g_loss")
def _gan_g_loss_fake(fake_logits, mode, target_real):
    return _loss_and_grad_fake(fake_logits)
