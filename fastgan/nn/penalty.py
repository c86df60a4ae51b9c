"""Gradient penalties on a discriminator's input gradient: WGAN-GP and R1.

Both differentiate the discriminator's score with respect to its input and then train on
a function of that gradient, so the backward runs twice (create_graph=True). The fused
BatchNorm+LeakyReLU layers and loss operators support that (docs/operators.md);
torch.compile does not, so `critic` must run eagerly.

A sample's score is the mean of its logits, as the GAN losses average them: a PatchGAN's
N x 1 x H x W map is one score per image, not H x W independent critics. Under fp16
autocast the gradient can underflow, so pass the GradScaler's scale as `grad_scale`: the
batch's mean score is multiplied by it before differentiating, as the GradScaler scales a
loss, and the gradient is unscaled after.
"""
from __future__ import annotations

from typing import Callable

import torch

Critic = Callable[[torch.Tensor], torch.Tensor]


def _input_gradient(critic: Critic, x: torch.Tensor, grad_scale: float) -> torch.Tensor:
    """d score_i / d x_i for every sample i, flattened to N x (C*H*W), in fp32."""
    if not grad_scale > 0:
        raise ValueError(f"grad_scale must be > 0, got {grad_scale}")
    x = x.detach().requires_grad_(True)
    score = critic(x)
    if score.dim() == 0 or score.shape[0] != x.shape[0]:
        raise ValueError(f"the critic must return one score or logit map per sample: input batch {x.shape[0]}, "
                         f"output shape {tuple(score.shape)}")
    n = x.shape[0]
    per_sample = score.float().reshape(n, -1).mean(1)
    # The batch mean, not the sum: each score then carries grad_scale / n into the backward, as
    # in the scaled GAN loss, where the sum's grad_scale alone overflows fp16 at the GradScaler's 2^16.
    (grad,) = torch.autograd.grad(per_sample.mean() * grad_scale, x, create_graph=True)
    return grad.float().reshape(n, -1) * (n / grad_scale)


def wgan_gp_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor,
                    grad_scale: float = 1.0) -> torch.Tensor:
    """E[(||grad D(x)||_2 - 1)^2] at x uniformly between paired real and fake samples
    (Gulrajani et al. 2017, whose weight is 10): the soft 1-Lipschitz constraint of a WGAN critic."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake samples must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    # Mixed in at least fp32, then handed to the critic in the samples' own dtype (a float64 or
    # bf16 critic takes no fp32 input).
    work = torch.promote_types(real.dtype, torch.float32)
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=work)
    fake = fake.detach().to(work)
    between = (fake + eps * (real.detach().to(work) - fake)).to(real.dtype)
    norm = _input_gradient(critic, between, grad_scale).norm(2, dim=1)
    return (norm - 1).pow(2).mean()


def r1_penalty(critic: Critic, real: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """E[||grad D(x)||^2] / 2 at real samples (Mescheder et al. 2018; the weight is their gamma):
    keeps the discriminator flat on the data, which stabilises any of the GAN losses."""
    return 0.5 * _input_gradient(critic, real, grad_scale).pow(2).sum(1).mean()
