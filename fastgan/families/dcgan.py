"""DCGAN: noise -> image; the discriminator scores single images."""
from __future__ import annotations

import torch

from ..config import Config, discriminator_norm
from .base import Family


class DCGANFamily(Family):
    name = "dcgan"

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        m, size = cfg.model, cfg.data.crop_size
        return {"G": dict(nz=m.nz, ngf=m.ngf, out_ch=m.channels, image_size=size, norm=m.norm, fused=m.fused),
                "D": dict(in_ch=m.channels, ndf=m.ndf, image_size=size, norm=discriminator_norm(m), fused=m.fused)}

    def images_seen(self, batch):
        return batch["image"].shape[0]

    def noise(self, n: int, device) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.nz, device=device)

    def generate(self, G, batch):
        return G(self.noise(batch["image"].shape[0], batch["image"].device))

    def real(self, batch):
        return batch["image"]

    @torch.no_grad()
    def sample_rows(self, G, batch):
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        z = torch.randn(4 * 8, self.cfg.model.nz, generator=g).to(batch["image"].device)
        fake = G(z)
        return list(fake.split(8))
