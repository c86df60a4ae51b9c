"""GAN-CLS (Reed et al., Generative Adversarial Text to Image Synthesis) on the DCGAN pair.

Both networks own a caption encoder (fastgan.text) and compress its embedding to
`embed_dim` with Linear + LeakyReLU(0.2), as in the paper. The generator concatenates
that code to z and runs the DCGAN generator (fused BatchNorm + ReLU). The discriminator
runs the DCGAN convolutions down to 4x4, tiles the code over the 4x4 map, and scores
image and text together with a 1x1 conv + BatchNorm + LeakyReLU (fused) and the 4x4
logit conv: it can thus learn to reject real images under the wrong caption.

`mix` < 1 in forward replaces each caption embedding e_i by mix * e_i + (1 - mix) * e_{i-1}
(its batch neighbour): the GAN-INT interpolations, made inside forward so that
DistributedDataParallel sees every use of the encoder.
"""
from __future__ import annotations

import torch
from torch import nn

from ..text import CaptionEncoder, check_tokens, encoder_args
from .dcgan import DCGANGenerator, check_images, check_noise, num_stages, strided_encoder
from .layers import check_norm, check_positive, conv_bias, init_and_fuse_, norm_layer

CORE = 4  # the discriminator joins image and text on its final 4x4 map


class TextEmbedding(nn.Module):
    """tokens -> compressed caption code [N, embed_dim]; a frozen encoder runs without gradients."""

    def __init__(self, encoder: dict | None, embed_dim: int, train_encoder: bool):
        super().__init__()
        self.encoder = CaptionEncoder(**(encoder or encoder_args()))
        self.compress = nn.Sequential(nn.Linear(self.encoder.text_dim, embed_dim), nn.LeakyReLU(0.2))
        self.train_encoder = train_encoder
        if not train_encoder:
            self.encoder.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, mix: float) -> torch.Tensor:
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            text = self.encoder(tokens)
        if mix != 1.0:
            text = mix * text + (1.0 - mix) * text.roll(1, 0)
        return self.compress(text)


def check_mix(mix: float) -> None:
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1] (the weight of each caption against its batch neighbour), got {mix}")


class TextConditionedGenerator(nn.Module):
    """(z [N, nz] or [N, nz, 1, 1], tokens [N, L]) -> image [N, out_ch, image_size, image_size] in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, out_ch: int = 3, image_size: int = 64, embed_dim: int = 128,
                 encoder: dict | None = None, train_encoder: bool = True, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(nz=nz, embed_dim=embed_dim)
        self.nz = nz
        self.text = TextEmbedding(encoder, embed_dim, train_encoder)
        self.net = DCGANGenerator(nz + embed_dim, ngf, out_ch, image_size, norm, fused)

    @property
    def encoder(self) -> CaptionEncoder:
        return self.text.encoder

    def forward(self, z: torch.Tensor, tokens: torch.Tensor, mix: float = 1.0) -> torch.Tensor:
        check_noise(z, self.nz)
        check_tokens(tokens, self.encoder.vocab_size, z.shape[0])
        check_mix(mix)
        return self.net(torch.cat([z.reshape(z.shape[0], self.nz), self.text(tokens, mix)], 1))


class MatchingAwareDiscriminator(nn.Module):
    """(images [N, in_ch, image_size, image_size], tokens [N, L]) -> one logit per (image, caption) pair, [N]."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, image_size: int = 64, embed_dim: int = 128,
                 encoder: dict | None = None, train_encoder: bool = True, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(in_ch=in_ch, ndf=ndf, embed_dim=embed_dim)
        check_norm(norm)
        stages = num_stages(image_size)
        self.in_ch, self.image_size = in_ch, image_size
        bias = conv_bias(norm)
        layers, width = strided_encoder(in_ch, ndf, stages, norm)
        self.image = nn.Sequential(*layers)
        self.text = TextEmbedding(encoder, embed_dim, train_encoder)
        self.joint = nn.Sequential(nn.Conv2d(width + embed_dim, width, 1, bias=bias), norm_layer(norm, width),
                                   nn.LeakyReLU(0.2), nn.Conv2d(width, 1, CORE, 1, 0, bias=bias))
        init_and_fuse_(self, norm, fused)

    @property
    def encoder(self) -> CaptionEncoder:
        return self.text.encoder

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, mix: float = 1.0) -> torch.Tensor:
        check_images(images, self.in_ch, self.image_size)
        check_tokens(tokens, self.encoder.vocab_size, images.shape[0])
        check_mix(mix)
        features = self.image(images)
        code = self.text(tokens, mix)[:, :, None, None].expand(-1, -1, CORE, CORE)
        joint = torch.cat([features, code.to(features.dtype)], 1)
        return self.joint(joint).reshape(images.shape[0])
