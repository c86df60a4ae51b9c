"""The contract between a GAN family and the training loop."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..config import Config
from ..models import build_model
from ..nn import PatchGANLoss, r1_penalty, wgan_gp_penalty


class Family:
    """Networks plus the three scoring functions of one GAN family.

    `model_args` ({role: constructor kwargs}) is stored in checkpoints so inference
    tools rebuild the networks without the training config. `adversarial` is False when
    the generator's loss has no adversarial term: the loop then skips the discriminator.
    `best_metric` names the validation metric that selects best.pt (lower is better),
    or None when the family has no validation measure. `notes` are start-up lines the
    trainer prints (e.g. which content loss runs).
    """

    name: str = ""
    best_metric: str | None = None
    notes: tuple[str, ...] = ()

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.model_args = self.build_args(cfg)
        self.models: dict[str, nn.Module] = {role: build_model(self.name, role, **kwargs)
                                             for role, kwargs in self.model_args.items()}
        self.gan_loss = PatchGANLoss(cfg.loss.gan_mode, target_real=cfg.loss.target_real)
        self.adversarial = True

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        raise NotImplementedError

    def images_seen(self, batch: dict) -> int:
        raise NotImplementedError

    def generate(self, G: nn.Module, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def real(self, batch: dict) -> torch.Tensor:
        """The real samples the discriminator judges: what the generator learns to imitate."""
        raise NotImplementedError

    def critic(self, D: nn.Module, batch: dict, images: torch.Tensor) -> torch.Tensor:
        """D's logits for `images` under the batch's conditioning (none here: an unconditional D)."""
        return D(images)

    def d_loss(self, D: nn.Module, batch: dict, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        loss = self.gan_loss.discriminator(self.critic(D, batch, self.real(batch)), self.critic(D, batch, fake))
        return loss, {"loss_D": loss}

    def g_loss(self, D: nn.Module, batch: dict, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        loss = self.gan_loss.generator(self.critic(D, batch, fake))
        return loss, {"loss_G": loss}

    def penalty(self, D: nn.Module, batch: dict, fake: torch.Tensor, autocast=nullcontext,
                grad_scale: float = 1.0) -> tuple[torch.Tensor, dict]:
        """loss.penalty_weight x loss.penalty_every x the loss.penalty term of the discriminator's loss (the
        trainer adds it on every loss.penalty_every-th step), and its log.

        D must be the eager module (torch.compile has no double backward). `fake` may hold
        more samples than the batch (GAN-INT); the penalty pairs the first ones with the reals.
        """
        options, real = self.cfg.loss, self.real(batch)

        def critic(images: torch.Tensor) -> torch.Tensor:
            with autocast():
                return self.critic(D, batch, images)

        if options.penalty == "wgan-gp":
            value = wgan_gp_penalty(critic, real, fake[:real.shape[0]], grad_scale)
        else:
            value = r1_penalty(critic, real, grad_scale)
        return options.penalty_weight * options.penalty_every * value, {"loss_D_penalty": value}

    @torch.no_grad()
    def sample_rows(self, G: nn.Module, batch: dict) -> list[torch.Tensor]:
        """Rows of images in [-1, 1] for the sample grid."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, G: nn.Module, batches) -> dict[str, float]:
        return {}
