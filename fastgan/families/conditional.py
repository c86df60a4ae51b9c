"""Class-conditional GAN (Mirza & Osindero): both networks also see the class label."""
from __future__ import annotations

import torch

from ..config import Config
from ..models import class_grid_labels
from .dcgan import DCGANFamily


class ConditionalFamily(DCGANFamily):
    name = "conditional"

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        args = DCGANFamily.build_args(cfg)
        for role in args:
            args[role]["num_classes"] = cfg.model.num_classes
        return args

    def generate(self, G, batch):
        labels = batch["label"]
        return G(self.noise(labels.shape[0], labels.device), labels)

    def critic(self, D, batch, images):
        return D(images, batch["label"])

    @torch.no_grad()
    def sample_rows(self, G, batch):
        """One row per class, the same noise in every row."""
        device = batch["image"].device
        per_class = 8
        labels = class_grid_labels(self.cfg.model.num_classes, per_class).to(device)
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        z = torch.randn(per_class, self.cfg.model.nz, generator=g).repeat(self.cfg.model.num_classes, 1)
        return list(G(z.to(device), labels).split(per_class))
