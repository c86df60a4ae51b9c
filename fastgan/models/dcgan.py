"""DCGAN (Radford et al.): the all-convolutional generator / discriminator pair.

At 64x64 the layout is pytorch/examples' dcgan (same `main.<i>` keys, so its checkpoints
load; the discriminator's final Sigmoid is left out because the losses take logits).
32 and 128 drop or add one stage. With norm="batch" no conv has a bias, as there; with
instance or no norm every conv has one.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import check_norm, check_positive, conv_bias, init_and_fuse_, norm_layer

IMAGE_SIZES = (32, 64, 128)


def num_stages(image_size: int) -> int:
    """Stride-2 stages between the 4x4 core and the image: 3, 4, 5 for 32, 64, 128."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {', '.join(map(str, IMAGE_SIZES))}; got {image_size!r}")
    return image_size.bit_length() - 3


def check_noise(z: torch.Tensor, nz: int) -> None:
    if not (z.dim() == 2 or (z.dim() == 4 and z.shape[2:] == (1, 1))) or z.shape[1] != nz:
        raise ValueError(f"z must have shape [N, {nz}] or [N, {nz}, 1, 1]; got {tuple(z.shape)}")


def check_images(images: torch.Tensor, channels: int, image_size: int) -> None:
    """A wrong size would not fail in the conv stack, it would silently give several logits per image."""
    expected = (channels, image_size, image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"images must have shape [N, {', '.join(map(str, expected))}]; got {tuple(images.shape)}")


class DCGANGenerator(nn.Module):
    """z [N, nz] or [N, nz, 1, 1] -> image [N, out_ch, image_size, image_size] in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, out_ch: int = 3, image_size: int = 64, norm: str = "batch",
                 fused: bool = True):
        super().__init__()
        check_positive(nz=nz, ngf=ngf, out_ch=out_ch)
        check_norm(norm)
        stages = num_stages(image_size)
        self.nz = nz
        bias = conv_bias(norm)
        width = ngf * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=bias), norm_layer(norm, width), nn.ReLU()]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=bias), norm_layer(norm, width // 2),
                       nn.ReLU()]
            width //= 2
        layers += [nn.ConvTranspose2d(width, out_ch, 4, 2, 1, bias=bias), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        init_and_fuse_(self, norm, fused)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_noise(z, self.nz)
        return self.main(z.reshape(z.shape[0], self.nz, 1, 1))


def strided_encoder(in_ch: int, ndf: int, stages: int, norm: str) -> tuple[list[nn.Module], int]:
    """The DCGAN discriminator's body: stride-2 convs, BN + LeakyReLU(0.2) after all but the first, down to
    4x4; returns the layers and the final width. The activations work in place (nothing else reads the
    tensor they overwrite), which spares autograd one saved map per layer."""
    bias = conv_bias(norm)
    width = ndf
    layers = [nn.Conv2d(in_ch, width, 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, inplace=True)]
    for _ in range(stages - 1):
        layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=bias), norm_layer(norm, width * 2),
                   nn.LeakyReLU(0.2, inplace=True)]
        width *= 2
    return layers, width


class DCGANDiscriminator(nn.Module):
    """image [N, in_ch, image_size, image_size] -> one real/fake logit per image, [N]."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, image_size: int = 64, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(in_ch=in_ch, ndf=ndf)
        check_norm(norm)
        stages = num_stages(image_size)
        self.in_ch, self.image_size = in_ch, image_size
        layers, width = strided_encoder(in_ch, ndf, stages, norm)
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=conv_bias(norm)))
        self.main = nn.Sequential(*layers)
        init_and_fuse_(self, norm, fused)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.in_ch, self.image_size)
        return self.main(images).reshape(images.shape[0])
