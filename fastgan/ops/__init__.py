"""The Python face of fastgan's operators.

Each function checks its arguments (clear Python errors instead of kernel asserts),
then calls torch.ops.fastgan.* when a compiled library covers the tensor's device,
else the pure-PyTorch reference. `backend_info()` says which backend is live.
"""
from __future__ import annotations

import warnings

import torch

from . import reference
from ._loader import BackendInfo, load

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgan")

_BACKEND: BackendInfo = load()
if _BACKEND.backend != "reference":
    from . import _registration  # noqa: F401  (registers the fakes)
elif _BACKEND.reason != "FASTGAN_BACKEND=reference":
    warnings.warn(
        f"fastgan: no compiled operators could be loaded, using the slower pure-PyTorch "
        f"reference ({_BACKEND.reason})", RuntimeWarning, stacklevel=2)

_warned_devices: set[str] = set()


def backend_info() -> dict:
    """Which operator backend is live: {'backend': 'aot'|'jit'|'reference', 'cuda': bool, ...}."""
    return _BACKEND.as_dict()


def _native(x: torch.Tensor) -> bool:
    """True when the compiled library serves x's device: its kernels, or for meta tensors (a model
    built on the meta device for shape inference or deferred init) the fakes it registers."""
    if _BACKEND.backend == "reference":
        return False
    if x.device.type in ("cpu", "meta") or (x.device.type == "cuda" and _BACKEND.cuda):
        return True
    if x.device.type not in _warned_devices:
        _warned_devices.add(x.device.type)
        warnings.warn(f"fastgan: the compiled operators have no {x.device.type} kernels "
                      f"(built without them); using the PyTorch reference there", RuntimeWarning)
    return False


def _check_bn_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected 4D input (N, C, H, W), got {x.dim()}D input of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point input (float32, float16, bfloat16 or float64), got {x.dtype}")


def _check_channel_vector(v, x: torch.Tensor, name: str) -> None:
    if v is None:
        return
    if v.dim() != 1 or v.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must have shape ({x.shape[1]},) to match the input's channels, "
                         f"got {tuple(v.shape)}")
    if v.device != x.device:
        raise ValueError(f"{name} is on {v.device} but the input is on {x.device}")


def _as_stat(v, x: torch.Tensor):
    """Per-channel vectors travel as float32 (float64 for float64 inputs). Compared first: even a
    no-op .to() is a dispatch, host time that small layers pay on every call."""
    if v is None:
        return None
    dtype = reference.stat_dtype(x)
    return v if v.dtype == dtype else v.to(dtype)


def _check_training_batch(x: torch.Tensor) -> None:
    count = x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise ValueError(f"got an empty batch of shape {tuple(x.shape)}: batch statistics need data")
    if count == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")


def bn_stats(x: torch.Tensor):
    """Per-channel (mean, biased var) of a 4-D input, in float32 (float64 for float64)."""
    _check_bn_input(x)
    return torch.ops.fastgan.bn_stats(x) if _native(x) else reference.bn_stats(x)


def bn_act_train(x, weight=None, bias=None, eps: float = 1e-5, negative_slope: float = 0.2,
                 save_output: bool = False):
    """Training-mode BatchNorm + LeakyReLU: returns (out, batch mean, biased batch var).

    Gradients flow to x, weight and bias; the statistics are returned for the
    running-average update and are not differentiable. save_output=True keeps only
    the output for backward (needs negative_slope > 0 and non-zero weights).
    """
    _check_bn_input(x)
    _check_channel_vector(weight, x, "weight")
    _check_channel_vector(bias, x, "bias")
    _check_training_batch(x)
    _check_save_output(save_output, negative_slope)
    weight, bias = _as_stat(weight, x), _as_stat(bias, x)
    if _native(x):
        return torch.ops.fastgan.bn_act_train(x, weight, bias, float(eps), float(negative_slope), save_output)[:3]
    return reference.bn_act_train(x, weight, bias, eps, negative_slope, save_output)


def bn_act_apply(x, mean, invstd, weight=None, bias=None, negative_slope: float = 0.2,
                 save_output: bool = False):
    """BatchNorm + LeakyReLU with given statistics (eval mode, or synchronized ones)."""
    _check_bn_input(x)
    for v, name in ((mean, "mean"), (invstd, "invstd"), (weight, "weight"), (bias, "bias")):
        _check_channel_vector(v, x, name)
    _check_save_output(save_output, negative_slope)
    mean, invstd, weight, bias = (_as_stat(v, x) for v in (mean, invstd, weight, bias))
    if _native(x):
        return torch.ops.fastgan.bn_act_apply(x, mean, invstd, weight, bias, float(negative_slope), save_output)
    return reference.bn_act_apply(x, mean, invstd, weight, bias, negative_slope, save_output)


def bn_act_eval(x, running_mean, running_var, weight=None, bias=None, eps: float = 1e-5,
                negative_slope: float = 0.2, save_output: bool = False):
    """Eval-mode BatchNorm + LeakyReLU from running statistics."""
    _check_bn_input(x)
    _check_channel_vector(running_var, x, "running_var")
    invstd = torch.rsqrt(running_var.to(reference.stat_dtype(x)) + eps)
    return bn_act_apply(x, running_mean, invstd, weight, bias, negative_slope, save_output)


def bn_act_backward_reduce(grad_out, saved, mean, invstd, weight, bias, negative_slope: float,
                           saved_is_output: bool):
    """Backward pass 1 (used by the synchronized module): per-channel (sum dz, sum dz*xhat)."""
    if _native(saved):
        return torch.ops.fastgan.bn_act_backward_reduce(grad_out, saved, mean, invstd, weight, bias,
                                                        float(negative_slope), saved_is_output)
    return reference.bn_act_backward_reduce(grad_out, saved, mean, invstd, weight, bias,
                                            negative_slope, saved_is_output)


def bn_act_backward_input(grad_out, saved, mean, invstd, weight, bias, mean_dz, mean_dz_xhat,
                          negative_slope: float, saved_is_output: bool):
    """Backward pass 2 (used by the synchronized module): grad_input from the channel means."""
    if _native(saved):
        return torch.ops.fastgan.bn_act_backward_input(grad_out, saved, mean, invstd, weight, bias, mean_dz,
                                                       mean_dz_xhat, float(negative_slope), saved_is_output)
    return reference.bn_act_backward_input(grad_out, saved, mean, invstd, weight, bias, mean_dz,
                                           mean_dz_xhat, negative_slope, saved_is_output)


def _check_save_output(save_output: bool, negative_slope: float) -> None:
    if save_output and not negative_slope > 0:
        raise ValueError(f"save_output (in-place mode) recovers the input from the output, which needs "
                         f"negative_slope > 0 (ReLU loses the negative half), got {negative_slope}")


def check_gan_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown GAN loss mode {mode!r}; valid modes are {', '.join(GAN_MODES)}")


def _check_logits(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating-point logits, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")


def gan_d_loss(real_logits, fake_logits, mode: str = "vanilla", target_real: float = 1.0,
               target_fake: float = 0.0) -> torch.Tensor:
    """Discriminator loss: mean real term + mean fake term (docs/operators.md)."""
    check_gan_mode(mode)
    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    if real_logits.device != fake_logits.device:
        raise ValueError(f"real_logits are on {real_logits.device} but fake_logits on {fake_logits.device}")
    if real_logits.dtype != fake_logits.dtype:
        raise TypeError(f"real_logits are {real_logits.dtype} but fake_logits {fake_logits.dtype}; "
                        f"pass both in one dtype")
    if _native(real_logits):
        return torch.ops.fastgan.gan_d_loss(real_logits, fake_logits, mode, float(target_real), float(target_fake))[0]
    return reference.gan_d_loss(real_logits, fake_logits, mode, target_real, target_fake)


def gan_g_loss(fake_logits, mode: str = "vanilla", target_real: float = 1.0) -> torch.Tensor:
    """Generator loss on the discriminator's logits for generated samples."""
    check_gan_mode(mode)
    _check_logits(fake_logits, "fake_logits")
    if _native(fake_logits):
        return torch.ops.fastgan.gan_g_loss(fake_logits, mode, float(target_real))[0]
    return reference.gan_g_loss(fake_logits, mode, target_real)


__all__ = ["backend_info", "bn_stats", "bn_act_train", "bn_act_apply", "bn_act_eval",
           "bn_act_backward_reduce", "bn_act_backward_input", "gan_d_loss", "gan_g_loss", "GAN_MODES"]
