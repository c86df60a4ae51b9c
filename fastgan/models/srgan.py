"""SRGAN (Ledig et al.): the SRResNet generator and the 8-convolution discriminator.

Convolutions right before a BatchNorm have no bias (the mean subtraction cancels it), as
in the other families; with B=16, 64 channels and batch norm the generator has 1,547,350
parameters (1,549,462 with those redundant biases, the figure usually quoted).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import check_norm, check_positive, conv_bias, init_and_fuse_, norm_layer

SCALES = (2, 4, 8)
DISCRIMINATOR_STRIDE = 16  # four stride-2 convolutions


def check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))} (x2 PixelShuffle stages); got {scale!r}")


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN plus the identity."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        bias = conv_bias(norm)
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias), norm_layer(norm, channels), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=bias), norm_layer(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNetGenerator(nn.Module):
    """Low-resolution image [N, in_ch, h, w] -> [N, out_ch, scale*h, scale*w] in [-1, 1], any h and w.

    The final tanh keeps outputs in the [-1, 1] range every fastgan image uses. Weights keep
    PyTorch's default (He-uniform) initialization, which suits a residual network; the
    N(0, 0.02) of DCGAN would shrink the signal through 16 blocks.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, num_blocks: int = 16, scale: int = 4,
                 norm: str = "batch"):
        super().__init__()
        check_positive(in_ch=in_ch, out_ch=out_ch, ngf=ngf, num_blocks=num_blocks)
        check_norm(norm)
        check_scale(scale)
        self.in_ch, self.scale = in_ch, scale
        self.head = nn.Sequential(nn.Conv2d(in_ch, ngf, 9, 1, 4), nn.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(ngf, norm) for _ in range(num_blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(ngf, ngf, 3, 1, 1, bias=conv_bias(norm)), norm_layer(norm, ngf))
        upsample = []
        for _ in range(scale.bit_length() - 1):
            upsample += [nn.Conv2d(ngf, 4 * ngf, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*upsample)
        self.tail = nn.Sequential(nn.Conv2d(ngf, out_ch, 9, 1, 4), nn.Tanh())

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.dim() != 4 or lr.shape[1] != self.in_ch:
            raise ValueError(f"lr must have shape [N, {self.in_ch}, H, W]; got {tuple(lr.shape)}")
        features = self.head(lr)
        features = features + self.fuse(self.blocks(features))  # the long skip
        return self.tail(self.upsample(features))


class SRGANDiscriminator(nn.Module):
    """image [N, in_ch, H, W] -> one real/fake logit per image, [N].

    Eight 3x3 convolutions (widths ndf, ndf, 2ndf, 2ndf, 4ndf, 4ndf, 8ndf, 8ndf; every
    second one strided), BN + LeakyReLU(0.2) after all but the first, then the dense head
    Linear(8ndf * pool^2, 16ndf) - LeakyReLU(0.2) - Linear(1). An adaptive average pool to
    pool x pool sits before the head: with pool = crop/16 (96 -> 6, the paper's layout) it is
    the identity on training crops, and it lets the network take any other size.
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, pool_size: int = 6, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(in_ch=in_ch, ndf=ndf, pool_size=pool_size)
        check_norm(norm)
        self.in_ch = in_ch
        bias = conv_bias(norm)
        layers = [nn.Conv2d(in_ch, ndf, 3, 1, 1), nn.LeakyReLU(0.2),
                  nn.Conv2d(ndf, ndf, 3, 2, 1, bias=bias), norm_layer(norm, ndf), nn.LeakyReLU(0.2)]
        width = ndf
        for _ in range(3):
            layers += [nn.Conv2d(width, 2 * width, 3, 1, 1, bias=bias), norm_layer(norm, 2 * width), nn.LeakyReLU(0.2),
                       nn.Conv2d(2 * width, 2 * width, 3, 2, 1, bias=bias), norm_layer(norm, 2 * width),
                       nn.LeakyReLU(0.2)]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * pool_size ** 2, 2 * width), nn.LeakyReLU(0.2),
                                  nn.Linear(2 * width, 1))
        init_and_fuse_(self, norm, fused)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.in_ch:
            raise ValueError(f"images must have shape [N, {self.in_ch}, H, W]; got {tuple(images.shape)}")
        return self.head(self.pool(self.features(images))).reshape(images.shape[0])


def discriminator_pool_size(crop_size: int) -> int:
    """The discriminator's feature-map side on a crop_size input (ceil: padded stride-2 convs)."""
    return -(-crop_size // DISCRIMINATOR_STRIDE)
