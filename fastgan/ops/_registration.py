"""register_fake and register_autograd for the compiled operators.

Fakes give torch.compile the exact shapes, dtypes and strides the kernels produce;
the autograd formulas turn the backward kernels into gradients (docs/operators.md).
The backward kernels are not themselves differentiable, so when the gradient will be
differentiated again (create_graph=True: gradient penalties such as R1 or WGAN-GP) the
formulas take the pure-PyTorch composition's gradients instead.
"""
from __future__ import annotations

import torch

from . import reference
from .reference import stat_dtype

lib = torch.ops.fastgan


def kernel_layout(x: torch.Tensor) -> torch.memory_format:
    """Mirror of csrc/common.h's kernel_layout: the layout outputs are written in."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


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
    return _empty_like_kernel(x), _channel_vector(x), _channel_vector(x)


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


def _grads_of_reference(forward, inputs, needs_grad, grad_out) -> tuple:
    """Differentiable gradients for create_graph=True: autograd through the reference
    composition, recomputed from the saved inputs (which keep their graph then)."""
    wanted = [t for t, needed in zip(inputs, needs_grad) if needed]
    with torch.enable_grad():
        grads = iter(torch.autograd.grad(forward(*inputs), wanted, grad_out, create_graph=True,
                                         allow_unused=True))
    return tuple(next(grads) if needed else None for needed in needs_grad)


def _check_not_in_place(ctx) -> None:
    if ctx.saved_is_output:
        raise RuntimeError(
            "fastgan: double backward (create_graph=True) is not supported in in-place mode "
            "(inplace=True / save_output=True): the input was overwritten, so the gradient cannot be "
            "differentiated with respect to it; use inplace=False for gradient penalties")


def _save_bn(ctx, x, out, negative_slope, save_output, *per_channel):
    # Keeping `out` instead of `x` is the in-place activated BatchNorm idea: the
    # input activation is then free to go as soon as the forward is done.
    ctx.save_for_backward(out if save_output else x, *per_channel)
    ctx.negative_slope = negative_slope
    ctx.saved_is_output = save_output


def _bn_train_setup(ctx, inputs, output):
    x, weight, bias, eps, negative_slope, save_output = inputs
    out, mean, var = output
    _save_bn(ctx, x, out, negative_slope, save_output, mean, var, weight, bias)
    ctx.eps = eps


def _bn_train_backward(ctx, grad_out, _grad_mean, _grad_var):
    saved, mean, var, weight, bias = ctx.saved_tensors
    if torch.is_grad_enabled():
        _check_not_in_place(ctx)
        return _grads_of_reference(
            lambda x, w, b: reference.bn_act_train(x, w, b, ctx.eps, ctx.negative_slope)[0],
            (saved, weight, bias), ctx.needs_input_grad[:3], grad_out) + (None, None, None)
    invstd = torch.rsqrt(var + ctx.eps)
    sum_dz, sum_dz_xhat = lib.bn_act_backward_reduce(
        grad_out, saved, mean, invstd, weight, bias, ctx.negative_slope, ctx.saved_is_output)
    grad_input = None
    if ctx.needs_input_grad[0]:
        count = saved.numel() // saved.shape[1]
        grad_input = lib.bn_act_backward_input(
            grad_out, saved, mean, invstd, weight, bias, sum_dz / count, sum_dz_xhat / count,
            ctx.negative_slope, ctx.saved_is_output)
    grad_weight = sum_dz_xhat if ctx.needs_input_grad[1] else None
    grad_bias = sum_dz if ctx.needs_input_grad[2] else None
    return grad_input, grad_weight, grad_bias, None, None, None


def _bn_apply_setup(ctx, inputs, output):
    x, mean, invstd, weight, bias, negative_slope, save_output = inputs
    _save_bn(ctx, x, output, negative_slope, save_output, mean, invstd, weight, bias)


def _bn_apply_backward(ctx, grad_out):
    """Statistics are inputs here (eval mode, or the synchronized forward)."""
    saved, mean, invstd, weight, bias = ctx.saved_tensors
    if torch.is_grad_enabled():
        _check_not_in_place(ctx)
        return _grads_of_reference(
            lambda x, m, i, w, b: reference.bn_act_apply(x, m, i, w, b, ctx.negative_slope),
            (saved, mean, invstd, weight, bias), ctx.needs_input_grad[:5], grad_out) + (None, None)
    needs_x, needs_mean, needs_invstd, needs_w, needs_b = ctx.needs_input_grad[:5]
    grads = [None] * 7
    if needs_x:
        zeros = torch.zeros_like(mean)
        grads[0] = lib.bn_act_backward_input(grad_out, saved, mean, invstd, weight, bias, zeros, zeros,
                                             ctx.negative_slope, ctx.saved_is_output)
    if needs_mean or needs_invstd or needs_w or needs_b:
        sum_dz, sum_dz_xhat = lib.bn_act_backward_reduce(
            grad_out, saved, mean, invstd, weight, bias, ctx.negative_slope, ctx.saved_is_output)
        scale = weight if weight is not None else torch.ones_like(mean)
        if needs_mean:
            grads[1] = -sum_dz * invstd * scale
        if needs_invstd:
            grads[2] = sum_dz_xhat * scale / invstd
        if needs_w:
            grads[3] = sum_dz_xhat
        if needs_b:
            grads[4] = sum_dz
    return tuple(grads)


def _loss_setup(ctx, inputs, output):
    """Keeps the gradients the forward computed, and the (small) logit maps for create_graph=True."""
    logits = [t for t in inputs if isinstance(t, torch.Tensor)]
    ctx.save_for_backward(*output[1:], *logits)
    ctx.options = inputs[len(logits):]


def _gan_d_loss_backward(ctx, grad_loss, _grad_real, _grad_fake):
    grad_real, grad_fake, real_logits, fake_logits = ctx.saved_tensors
    if torch.is_grad_enabled():
        return _grads_of_reference(lambda r, f: reference.gan_d_loss(r, f, *ctx.options),
                                   (real_logits, fake_logits), ctx.needs_input_grad[:2],
                                   grad_loss) + (None, None, None)
    return grad_real * grad_loss, grad_fake * grad_loss, None, None, None


def _gan_g_loss_backward(ctx, grad_loss, _grad_fake):
    grad_fake, fake_logits = ctx.saved_tensors
    if torch.is_grad_enabled():
        return _grads_of_reference(lambda f: reference.gan_g_loss(f, *ctx.options), (fake_logits,),
                                   ctx.needs_input_grad[:1], grad_loss) + (None, None)
    return grad_fake * grad_loss, None, None


torch.library.register_autograd("fastgan::bn_act_train", _bn_train_backward, setup_context=_bn_train_setup)
torch.library.register_autograd("fastgan::bn_act_apply", _bn_apply_backward, setup_context=_bn_apply_setup)
torch.library.register_autograd("fastgan::gan_d_loss", _gan_d_loss_backward, setup_context=_loss_setup)
torch.library.register_autograd("fastgan::gan_g_loss", _gan_g_loss_backward, setup_context=_loss_setup)
