"""pix2pix: a U-Net maps the input image to the output; a PatchGAN judges (input, output) pairs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import Config, discriminator_norm
from ..models import PATCH_SIZES
from .base import Family


class Pix2PixFamily(Family):
    name = "pix2pix"
    best_metric = "val_l1"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.adversarial = cfg.loss.lambda_adv > 0
        self.reconstruction = F.l1_loss if cfg.loss.reconstruction == "l1" else F.mse_loss

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        m = cfg.model
        return {"G": dict(in_ch=3, out_ch=3, num_downs=m.num_downs, ngf=m.ngf, norm=m.norm, dropout=m.dropout,
                          fused=m.fused),
                "D": dict(n_layers=PATCH_SIZES[m.patch_size], in_ch=6, ndf=m.ndf, norm=discriminator_norm(m),
                          fused=m.fused)}

    def images_seen(self, batch):
        return batch["A"].shape[0]

    def generate(self, G, batch):
        return G(batch["A"])

    def real(self, batch):
        return batch["B"]

    def critic(self, D, batch, images):
        """The PatchGAN judges (input, output) pairs."""
        return D(torch.cat([batch["A"], images], 1))

    def d_loss(self, D, batch, fake):
        loss, _ = super().d_loss(D, batch, fake)
        loss = 0.5 * loss  # halved as in the paper: slows D relative to G
        return loss, {"loss_D": loss}

    def g_loss(self, D, batch, fake):
        rec = self.reconstruction(fake.float(), batch["B"].float())
        loss = self.cfg.loss.lambda_rec * rec
        logs = {"loss_rec": rec}
        if self.adversarial:
            adv = self.gan_loss.generator(self.critic(D, batch, fake))
            loss = loss + self.cfg.loss.lambda_adv * adv
            logs["loss_G_adv"] = adv
        logs["loss_G"] = loss
        return loss, logs

    @torch.no_grad()
    def sample_rows(self, G, batch):
        n = min(8, batch["A"].shape[0])
        return [batch["A"][:n], G(batch["A"][:n]), batch["B"][:n]]

    @torch.no_grad()
    def evaluate(self, G, batches):
        from ..metrics import evaluate_pairs
        outputs, targets = [], []
        for batch in batches:
            outputs.append(G(batch["A"]).float().cpu())
            targets.append(batch["B"].float().cpu())
        if not outputs:
            return {}
        scores = evaluate_pairs(torch.cat(outputs), torch.cat(targets))
        return {f"val_{k}": float(v) for k, v in scores.items()}
