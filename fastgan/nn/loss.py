"""GAN losses over discriminator logit maps, on the fused loss operators."""
from __future__ import annotations

import torch

from fastgan import ops


class PatchGANLoss:
    """The discriminator and generator losses of one GAN objective.

    Works on logit maps of any shape: PatchGAN's N x 1 x H x W (every patch is one
    real/fake decision, averaged) or a global discriminator's N x 1. mode is one of
    vanilla (BCE with logits, the non-saturating generator loss), lsgan, hinge or
    wgan; target_real / target_fake allow label smoothing for vanilla and lsgan.
    """

    def __init__(self, mode: str = "vanilla", target_real: float = 1.0, target_fake: float = 0.0):
        ops.check_gan_mode(mode)
        if mode in ("hinge", "wgan") and (target_real != 1.0 or target_fake != 0.0):
            raise ValueError(f"target_real/target_fake apply to vanilla and lsgan only; {mode} has fixed "
                             f"margins (got target_real={target_real}, target_fake={target_fake})")
        self.mode = mode
        self.target_real = float(target_real)
        self.target_fake = float(target_fake)

    def __repr__(self) -> str:
        return f"PatchGANLoss(mode={self.mode!r}, target_real={self.target_real}, target_fake={self.target_fake})"

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Mean real term + mean fake term (pix2pix halves it when it steps D)."""
        return ops.gan_d_loss(real_logits, fake_logits, self.mode, self.target_real, self.target_fake)

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return ops.gan_g_loss(fake_logits, self.mode, self.target_real)
