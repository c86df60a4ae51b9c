"""BatchNorm2d + LeakyReLU/ReLU as one module on the fused operators.

The modules keep nn.BatchNorm2d's parameters, buffers and state_dict keys, so a
checkpoint of `Sequential(BatchNorm2d, LeakyReLU)` loads into them unchanged. They
derive from _NormBase rather than _BatchNorm on purpose: torch's
convert_sync_batchnorm would otherwise turn them into a plain SyncBatchNorm and
silently drop the activation.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.batchnorm import _NormBase

from fastgan import ops
from fastgan.ops.layout import kernel_layout


class BatchNormLeakyReLU2d(_NormBase):
    """Drop-in for `BatchNorm2d(C)` followed by `LeakyReLU(negative_slope)`.

    negative_slope=0 gives ReLU (the DCGAN generator). inplace=True keeps only the
    output for backward (in-place activated BatchNorm), so the input activation can
    be freed; it needs negative_slope > 0 and non-zero weights. bias=False drops the
    shift as `BatchNorm2d(C, bias=False)` does in newer torch, on any torch.
    """

    def __init__(self, num_features: int, negative_slope: float = 0.2, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 inplace: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        if not bias:
            self.register_parameter("bias", None)  # older torch: _NormBase takes no bias
        if inplace and not negative_slope > 0:
            raise ValueError(f"inplace=True recovers the input from the output, which needs "
                             f"negative_slope > 0 (ReLU loses the negative half), got {negative_slope}")
        self.negative_slope = float(negative_slope)
        self.inplace = inplace

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, negative_slope={self.negative_slope}, inplace={self.inplace}"

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got an input with "
                             f"{x.shape[1]} channels (shape {tuple(x.shape)})")

    def _momentum_factor(self):
        """nn.BatchNorm2d's averaging factor; a tensor for momentum=None (no host sync), in the
        buffers' dtype. The count is inverted in at least float32: in float16 it turns inf past
        65504 batches (a factor of 0: the statistics would freeze), in bfloat16 it rounds."""
        if self.momentum is None:
            dtype = self.running_mean.dtype  # float64 stays float64
            wide = torch.promote_types(dtype, torch.float32)
            return self.num_batches_tracked.to(wide).reciprocal().to(dtype)
        return self.momentum

    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count) -> None:
        # lerp_ is (1 - factor) * running + factor * batch in one kernel per buffer, and one foreach
        # call does both buffers: a small layer's step is bound by host time per launch
        # (benchmarks/README.md, "Host overhead").
        factor = self._momentum_factor()
        dtype = self.running_mean.dtype  # a module cast whole to a half type keeps half buffers
        unbiased = var * (count / (count - 1))
        with torch.no_grad():
            if isinstance(factor, float) and mean.dtype == dtype:  # both buffers in one call
                torch._foreach_lerp_((self.running_mean, self.running_var), (mean, unbiased), factor)
            else:
                self.running_mean.lerp_(mean.to(dtype), factor)
                self.running_var.lerp_(unbiased.to(dtype), factor)

    def _uses_batch_stats(self) -> bool:
        return self.training or self.running_mean is None

    def _count_batch(self) -> bool:
        """Advances num_batches_tracked; True when running stats must be updated."""
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            return True
        return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        update = self._count_batch()
        if self._uses_batch_stats():
            if x.numel() == 0:
                return self._empty_batch(x)
            out, mean, var = ops.bn_act_train(x, self.weight, self.bias, self.eps, self.negative_slope,
                                              save_output=self.inplace)
            if update:
                self._update_running_stats(mean, var, x.numel() // x.shape[1])
            return out
        return ops.bn_act_eval(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps,
                               self.negative_slope, save_output=self.inplace)

    def _empty_batch(self, x: torch.Tensor) -> torch.Tensor:
        """nn.BatchNorm2d's answer to an empty training batch (a detector's head with no boxes): an
        empty output with zero weight and bias gradients, the running statistics left as they are."""
        stat_dtype = ops.reference.stat_dtype(x)
        mean = torch.zeros(self.num_features, dtype=stat_dtype, device=x.device)
        return ops.bn_act_apply(x, mean, torch.ones_like(mean), self.weight, self.bias, self.negative_slope,
                                save_output=self.inplace)


def adopt_norm_state(target: nn.Module, source: nn.Module) -> None:
    """Gives target the very parameter and buffer objects of source (a norm layer of the same
    configuration) and its train/eval mode, as torch's convert_sync_batchnorm does: dtype,
    device, requires_grad and optimizer references all carry over."""
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        value = getattr(source, name, None)
        if value is not None:
            setattr(target, name, value)
    target.train(source.training)


class _SyncBatchNormAct(torch.autograd.Function):
    """Cross-process statistics: one all_reduce forward (2C+1 values), one backward (2C)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, negative_slope, save_output, group):
        channels = x.shape[1]
        local_mean, local_var = ops.bn_stats(x)
        count = x.numel() // channels
        # Sums in float64 so that E[x^2] - E[x]^2 keeps its digits for large means.
        mean64, var64 = local_mean.double(), local_var.double()
        packed = torch.cat([mean64 * count, (var64 + mean64 * mean64) * count,
                            mean64.new_full((1,), float(count))])
        dist.all_reduce(packed, group=group)
        total = packed[-1]
        mean = packed[:channels] / total
        var = (packed[channels:2 * channels] / total - mean * mean).clamp_(min=0)
        mean, var = mean.to(local_mean.dtype), var.to(local_mean.dtype)
        invstd = torch.rsqrt(var + eps)
        out = ops.bn_act_apply(x, mean, invstd, weight, bias, negative_slope)
        ctx.save_for_backward(out if save_output else x, mean, invstd, weight, bias, total)
        ctx.negative_slope, ctx.saved_is_output, ctx.group = negative_slope, save_output, group
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    @once_differentiable  # a gradient penalty through it gets torch's clear error, not a silent zero
    def backward(ctx, grad_out, _grad_mean, _grad_var, _grad_total):
        saved, mean, invstd, weight, bias, total = ctx.saved_tensors
        # Both kernels read grad_out in saved's layout: a gradient in another (expanded by sum(), or
        # another memory format) is copied here once, not in each of them.
        grad_out = grad_out.contiguous(memory_format=kernel_layout(saved))
        sum_dz, sum_dz_xhat = ops.bn_act_backward_reduce(grad_out, saved, mean, invstd, weight, bias,
                                                         ctx.negative_slope, ctx.saved_is_output)
        channels = mean.shape[0]
        summed = torch.cat([sum_dz, sum_dz_xhat])
        dist.all_reduce(summed, group=ctx.group)
        total = total.to(summed.dtype)
        grad_input = ops.bn_act_backward_input(
            grad_out, saved, mean, invstd, weight, bias, summed[:channels] / total,
            summed[channels:] / total, ctx.negative_slope, ctx.saved_is_output)
        # Parameter gradients stay local: DDP averages them across processes, as it
        # does for torch.nn.SyncBatchNorm.
        grad_weight = sum_dz_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dz if bias is not None and ctx.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias, None, None, None, None


class SyncBatchNormLeakyReLU2d(BatchNormLeakyReLU2d):
    """BatchNormLeakyReLU2d whose training statistics span a process group (DDP).

    Works over gloo and NCCL. Outside an initialized process group of more than one
    process it behaves exactly like BatchNormLeakyReLU2d.
    """

    def __init__(self, num_features: int, negative_slope: float = 0.2, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 inplace: bool = False, process_group=None, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, negative_slope, eps, momentum, affine, track_running_stats, inplace,
                         device=device, dtype=dtype, bias=bias)
        self.process_group = process_group

    def _world_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self._uses_batch_stats() and self._world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        if x.numel() == 0:
            raise ValueError(f"got an empty local batch of shape {tuple(x.shape)}; every process needs data")
        update = self._count_batch()
        weight, bias = ops._as_stat(self.weight, x), ops._as_stat(self.bias, x)
        out, mean, var, total = _SyncBatchNormAct.apply(x, weight, bias, self.eps, self.negative_slope,
                                                        self.inplace, self.process_group)
        if update:
            self._update_running_stats(mean, var, total)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None,
                               include_batchnorm2d: bool = False) -> nn.Module:
        """Returns module with every BatchNormLeakyReLU2d replaced by the synchronized one.

        include_batchnorm2d=True also replaces each plain nn.BatchNorm2d, by the synchronized
        module with negative_slope=1 (an identity activation): synchronized BatchNorm that,
        unlike torch's SyncBatchNorm, runs on the CPU (gloo) as well as on GPUs.
        """
        plain = include_batchnorm2d and type(module) is nn.BatchNorm2d
        if type(module) is BatchNormLeakyReLU2d or plain:
            slope, inplace = (1.0, False) if plain else (module.negative_slope, module.inplace)
            synced = cls(module.num_features, slope, module.eps, module.momentum, module.affine,
                         module.track_running_stats, inplace, process_group, bias=module.bias is not None)
            adopt_norm_state(synced, module)
            return synced
        for name, child in module.named_children():
            module.add_module(name, cls.convert_sync_batchnorm(child, process_group, include_batchnorm2d))
        return module


convert_sync_batchnorm = SyncBatchNormLeakyReLU2d.convert_sync_batchnorm
