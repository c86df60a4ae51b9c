"""GAN-CLS (Reed et al.): caption -> image, with a matching-aware discriminator and optional GAN-INT.

The discriminator learns from three kinds of pair: {real image, right caption} is real,
{fake image, right caption} and {real image, wrong caption} are fake; the wrong caption
of sample i is the caption of sample i-1 (the batch rolled by one), except where both
describe the same picture or class, which are left out of that term. Its loss is
real + (fake + wrong) / 2, as in the paper.

GAN-INT: the generator also makes images from beta * e_i + (1 - beta) * e_{i-1}, the
interpolation of neighbouring caption embeddings, and is scored by the discriminator
under that same interpolated text (there is no real image to pair it with).
"""
from __future__ import annotations

import torch

from ..config import Config, ModelConfig, discriminator_norm
from ..text import encoder_args, load_caption_encoder, tokenize
from .base import Family

SAMPLE_CAPTIONS = 4  # rows of the training sample grid
SAMPLES_PER_CAPTION = 8
DEFAULT_CAPTION_LEN = ModelConfig().caption_len


def wrong_pairs(tokens: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(captions rolled by one sample, mask of the samples whose rolled caption describes another source)."""
    return tokens.roll(1, 0), source != source.roll(1, 0)


def matching_aware_d_loss(gan_loss, real_right: torch.Tensor, fake_right: torch.Tensor,
                          wrong_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """real + (fake + wrong) / 2 on logits, the wrong term over the `valid` pairs; with none, real + fake.
    The wrong-caption pass then still enters the loss, with weight 0: under synchronized BatchNorm
    every process must run the same backward all-reduces, whether its shard had wrong pairs or not."""
    real_wrong = wrong_logits[valid]
    if real_wrong.numel() == 0:
        return gan_loss.discriminator(real_right, fake_right) + (wrong_logits * 0).sum()
    return 0.5 * (gan_loss.discriminator(real_right, fake_right) + gan_loss.discriminator(real_right, real_wrong))


def caption_length(ckpt: dict) -> int:
    """The model.caption_len a checkpoint was trained with, so sampling cuts captions where training did."""
    return int(ckpt.get("config", {}).get("model", {}).get("caption_len", DEFAULT_CAPTION_LEN))


def generate_from_captions(G, captions: list[str], n: int, caption_len: int, generator: torch.Generator,
                           device) -> torch.Tensor:
    """n images per caption, [len(captions) * n, C, H, W]; every caption gets the same n noise vectors."""
    z = torch.randn(n, G.nz, generator=generator).repeat(len(captions), 1)
    tokens = tokenize(captions, caption_len).repeat_interleave(n, 0)
    return G(z.to(device), tokens.to(device))


class GANCLSFamily(Family):
    name = "gancls"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m = cfg.model
        self.gan_int, self.beta = m.gan_int, m.gan_int_beta
        if m.text_encoder:
            _, weights = load_caption_encoder(m.text_encoder)
            for model in self.models.values():
                model.encoder.load_state_dict(weights)
            source = f"pretrained, frozen ({m.text_encoder})"
        else:
            source = "character-level, trained jointly (one per network)"
        args = self.model_args["G"]["encoder"]
        self.notes = [f"gancls caption encoder: {source}, {args['text_dim']}-d, compressed to "
                      f"{self.model_args['G']['embed_dim']}-d; discriminator: real/right vs fake/right and "
                      f"real/wrong"]
        if self.gan_int:
            self.notes.append(f"gancls GAN-INT: generator also trained on interpolated captions "
                              f"(beta {self.beta:g})")

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        m, size = cfg.model, cfg.data.crop_size
        encoder = (load_caption_encoder(m.text_encoder)[0] if m.text_encoder
                   else encoder_args(text_dim=m.text_dim))
        text = dict(embed_dim=m.text_embed_dim, encoder=encoder, train_encoder=not m.text_encoder, fused=m.fused)
        return {"G": dict(nz=m.nz, ngf=m.ngf, out_ch=m.channels, image_size=size, norm=m.norm, **text),
                "D": dict(in_ch=m.channels, ndf=m.ndf, image_size=size, norm=discriminator_norm(m), **text)}

    def images_seen(self, batch):
        return batch["image"].shape[0]

    def generate(self, G, batch):
        """Fakes for the right captions, then (GAN-INT) as many for the interpolated ones."""
        tokens = batch["tokens"]
        n, device = tokens.shape[0], tokens.device
        fake = G(torch.randn(n, self.cfg.model.nz, device=device), tokens)
        if not self.gan_int:
            return fake
        interpolated = G(torch.randn(n, self.cfg.model.nz, device=device), tokens, mix=self.beta)
        return torch.cat([fake, interpolated])

    def real(self, batch):
        return batch["image"]

    def critic(self, D, batch, images):
        """Scored under the right captions."""
        return D(images, batch["tokens"])

    def d_loss(self, D, batch, fake):
        images, tokens = batch["image"], batch["tokens"]
        wrong, valid = wrong_pairs(tokens, batch["source"])
        real_right = self.critic(D, batch, images)
        fake_right = self.critic(D, batch, fake[:images.shape[0]])
        wrong_logits = D(images, wrong)
        loss = matching_aware_d_loss(self.gan_loss, real_right, fake_right, wrong_logits, valid)
        logs = {"loss_D": loss, "logit_real_right": real_right.detach().float().mean()}
        if valid.any():  # how well D tells a wrong caption from the right one
            logs["logit_real_wrong"] = wrong_logits[valid].detach().float().mean()
        return loss, logs

    def g_loss(self, D, batch, fake):
        tokens = batch["tokens"]
        n = tokens.shape[0]
        loss = self.gan_loss.generator(self.critic(D, batch, fake[:n]))
        logs = {}
        if self.gan_int:
            interpolated = self.gan_loss.generator(D(fake[n:], tokens, mix=self.beta))
            logs["loss_G_int"] = interpolated
            loss = loss + interpolated
        logs["loss_G"] = loss
        return loss, logs

    @torch.no_grad()
    def sample_rows(self, G, batch):
        """One row per caption of the first samples of the batch, the same noise in every row."""
        tokens = batch["tokens"][:SAMPLE_CAPTIONS]
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        z = torch.randn(SAMPLES_PER_CAPTION, self.cfg.model.nz, generator=g).repeat(tokens.shape[0], 1)
        images = G(z.to(tokens.device), tokens.repeat_interleave(SAMPLES_PER_CAPTION, 0))
        return list(images.split(SAMPLES_PER_CAPTION))
