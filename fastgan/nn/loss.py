"""GAN losses over discriminator logit maps, on the fused loss operators."""
from __future__ import annotations

import torch

from fastgan import ops


class PatchGANLoss:
    """The discriminator and generator losses of one GAN objective.

    Works on logit maps of any shape: PatchGAN's N x 1 x H x W (every patch is one
    real/fake decision, averaged) or a global discriminator's N x 1. mode is one of
    vanilla (BCE with logits, the non-saturating generator loss), lsgan, hinge or
    wgan. For vanilla and lsgan, target_real / target_fake are the discriminator's
    targets (label smoothing) and target_generator the generator's: one-sided label
    smoothing (Salimans et al. 2016) softens the discriminator's real target only, so the
    generator keeps aiming at 1 (with 0.9 it would be pushed back once D rates its fakes
    above 0.9).
    """

    def __init__(self, mode: str = "vanilla", target_real: float = 1.0, target_fake: float = 0.0,
                 target_generator: float = 1.0):
        ops.check_gan_mode(mode)
        if mode in ("hinge", "wgan") and (target_real, target_fake, target_generator) != (1.0, 0.0, 1.0):
            raise ValueError(f"target_real/target_fake/target_generator apply to vanilla and lsgan only; {mode} has "
                             f"fixed margins (got target_real={target_real}, target_fake={target_fake}, "
                             f"target_generator={target_generator})")
        self.mode = mode
        self.target_real = float(target_real)
        self.target_fake = float(target_fake)
        self.target_generator = float(target_generator)

    def __repr__(self) -> str:
        return (f"PatchGANLoss(mode={self.mode!r}, target_real={self.target_real}, target_fake={self.target_fake}, "
                f"target_generator={self.target_generator})")

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Mean real term + mean fake term (pix2pix halves it when it steps D)."""
        return ops.gan_d_loss(real_logits, fake_logits, self.mode, self.target_real, self.target_fake)

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return ops.gan_g_loss(fake_logits, self.mode, self.target_generator)
