"""SRGAN and its MSE-trained generator SRResNet: a low-resolution photo -> the same photo `scale` times larger.

`srresnet` trains the generator on the content loss alone (the paper's pre-training; the
discriminator is built but never stepped, as in pix2pix's reconstruction-only mode);
`srgan` adds `loss.sr_lambda_adv` x the non-saturating adversarial loss of a
discriminator that scores single high-resolution images, and usually starts its
generator from an srresnet checkpoint (`model.init_generator`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt_io
from ..config import Config, discriminator_norm
from ..metrics import bicubic_upscale, evaluate_superres
from ..models import discriminator_pool_size
from ..vgg import load_vgg19_features
from .base import Family

# Ledig et al. divide VGG features by 12.75 to bring the VGG loss to the scale of the pixel MSE.
VGG_RESCALE = 1.0 / 12.75


def content_loss_name(cfg: Config) -> str:
    """'vgg' or 'mse': what loss.content=auto means for this family and these settings."""
    if cfg.loss.content != "auto":
        return cfg.loss.content
    return "vgg" if cfg.model.family == "srgan" and cfg.loss.vgg_weights else "mse"


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean absolute difference between vertical plus horizontal neighbours."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


def load_generator_weights(G: torch.nn.Module, path: str) -> None:
    """Copies models["G"] of a fastgan srresnet/srgan checkpoint into G, refusing other layouts by name."""
    state = ckpt_io.load(path)
    if state.get("family") not in ("srresnet", "srgan"):
        raise ValueError(f"model.init_generator {path} holds a {state.get('family')!r} checkpoint; it must be "
                         f"from an srresnet or srgan run")
    weights, own = state["models"]["G"], G.state_dict()
    mismatched = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in weights and weights[k].shape != v.shape]
    if weights.keys() != own.keys() or mismatched:
        detail = mismatched[0] if mismatched else f"its generator was built with {state['model_args']['G']}"
        raise ValueError(f"model.init_generator {path} does not fit this generator ({detail}); model.ngf, "
                         f"model.num_blocks, model.scale and model.norm must match the pre-training run")
    G.load_state_dict(weights)


class SRResNetFamily(Family):
    name = "srresnet"
    best_metric = "val_mse_y"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.scale = cfg.model.scale
        self.adversarial = self.name == "srgan" and cfg.loss.sr_lambda_adv > 0
        self.content = content_loss_name(cfg)
        self.vgg = load_vgg19_features(cfg.loss.vgg_weights, cfg.loss.vgg_layer) if self.content == "vgg" else None
        if cfg.model.init_generator:
            load_generator_weights(self.models["G"], cfg.model.init_generator)
        content = (f"VGG19 {cfg.loss.vgg_layer} feature MSE x {VGG_RESCALE:.4g}^2 ({cfg.loss.vgg_weights})"
                   if self.vgg is not None else "pixel MSE")
        terms = [f"content = {content}"]
        if self.adversarial:
            terms.append(f"{cfg.loss.sr_lambda_adv:g} x adversarial ({cfg.loss.gan_mode})")
        if cfg.loss.tv_weight:
            terms.append(f"{cfg.loss.tv_weight:g} x total variation")
        self.notes = [f"{self.name} generator loss: " + " + ".join(terms)]
        if cfg.model.init_generator:
            self.notes.append(f"generator initialized from {cfg.model.init_generator}")

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        m = cfg.model
        return {"G": dict(in_ch=3, out_ch=3, ngf=m.ngf, num_blocks=m.num_blocks, scale=m.scale, norm=m.norm),
                "D": dict(in_ch=3, ndf=m.ndf, pool_size=discriminator_pool_size(cfg.data.crop_size),
                          norm=discriminator_norm(m), fused=m.fused)}

    def images_seen(self, batch):
        return batch["hr"].shape[0]

    def generate(self, G, batch):
        return G(batch["lr"])

    def content_loss(self, fake: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.vgg is None:
            return F.mse_loss(fake.float(), hr.float())
        self.vgg.to(fake.device)  # not a trained network, so the loop does not place it
        return F.mse_loss(self.vgg(fake.float()) * VGG_RESCALE, self.vgg(hr.float()) * VGG_RESCALE)

    def real(self, batch):
        return batch["hr"]

    def g_loss(self, D, batch, fake):
        content = self.content_loss(fake, batch["hr"])
        loss, logs = content, {"loss_content": content}
        if self.adversarial:
            adv = self.gan_loss.generator(self.critic(D, batch, fake))
            loss = loss + self.cfg.loss.sr_lambda_adv * adv
            logs["loss_G_adv"] = adv
        if self.cfg.loss.tv_weight:
            tv = total_variation(fake.float())
            loss = loss + self.cfg.loss.tv_weight * tv
            logs["loss_tv"] = tv
        logs["loss_G"] = loss
        return loss, logs

    @torch.no_grad()
    def sample_rows(self, G, batch):
        """Bicubic upscale, network output, original."""
        n = min(8, batch["lr"].shape[0])
        lr = batch["lr"][:n]
        return [bicubic_upscale(lr.float(), self.scale), G(lr).float().clamp(-1, 1), batch["hr"][:n]]

    @torch.no_grad()
    def evaluate(self, G, batches):
        outputs, targets = [], []
        for batch in batches:
            outputs.append(G(batch["lr"]).float().clamp(-1, 1).cpu())
            targets.append(batch["hr"].float().cpu())
        if not outputs:
            return {}
        scores = evaluate_superres(torch.cat(outputs), torch.cat(targets), self.scale)
        return {f"val_{k}": v for k, v in scores.items()}


class SRGANFamily(SRResNetFamily):
    # Y PSNR rewards the blur the adversarial term removes, so it cannot pick the best SRGAN.
    name = "srgan"
    best_metric = None
