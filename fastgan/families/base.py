"""The contract between a GAN family and the training loop."""
from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..models import build_model
from ..nn import PatchGANLoss


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

    def d_loss(self, D: nn.Module, batch: dict, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def g_loss(self, D: nn.Module, batch: dict, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    @torch.no_grad()
    def sample_rows(self, G: nn.Module, batch: dict) -> list[torch.Tensor]:
        """Rows of images in [-1, 1] for the sample grid."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, G: nn.Module, batches) -> dict[str, float]:
        return {}
