"""Class-conditional GAN (Mirza & Osindero) on the DCGAN pair.

The generator sees its label as a learned embedding concatenated to z. The
discriminator sees it as one extra input channel: a learned image-sized map per class
(an embedding of the one-hot label into H*W values), concatenated to the image, so
the first conv can relate label and pixels at every position. Embeddings keep
nn.Embedding's N(0, 1) init, the scale of z.
"""
from __future__ import annotations

import torch
from torch import nn

from .dcgan import DCGANDiscriminator, DCGANGenerator, check_images, check_noise
from .layers import check_positive


def check_labels(labels: torch.Tensor, num_classes: int, batch: int) -> None:
    """Shape and dtype always; values only for CPU labels. Reading values on a GPU would stall
    every forward on a host sync, so there an out-of-range label fails in a device-side assert
    (of the embedding or one_hot that reads it); the trainer checks the data's labels once at start-up."""
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have shape [{batch}] (one per sample); got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor; got dtype {labels.dtype}")
    if labels.device.type == "cpu":
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.numel():
            raise ValueError(f"labels must be in [0, {num_classes}); got {bad[0].item()}")


def class_grid_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a sample grid with one row per class (per_class images in each row)."""
    check_positive(num_classes=num_classes, per_class=per_class)
    return torch.arange(num_classes).repeat_interleave(per_class)


class ConditionalGenerator(nn.Module):
    """(z [N, nz] or [N, nz, 1, 1], labels [N]) -> image [N, out_ch, image_size, image_size]."""

    def __init__(self, num_classes: int, nz: int = 100, ngf: int = 64, out_ch: int = 3, image_size: int = 64,
                 embed_dim: int = 50, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(num_classes=num_classes, nz=nz, embed_dim=embed_dim)
        self.num_classes, self.nz = num_classes, nz
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = DCGANGenerator(nz + embed_dim, ngf, out_ch, image_size, norm, fused)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_noise(z, self.nz)
        check_labels(labels, self.num_classes, z.shape[0])
        code = self.embed(labels)
        return self.net(torch.cat([z.reshape(z.shape[0], self.nz), code], 1))


class ConditionalDiscriminator(nn.Module):
    """(images [N, in_ch, image_size, image_size], labels [N]) -> one logit per image, [N]."""

    def __init__(self, num_classes: int, in_ch: int = 3, ndf: int = 64, image_size: int = 64, norm: str = "batch",
                 fused: bool = True):
        super().__init__()
        check_positive(num_classes=num_classes, in_ch=in_ch)
        self.num_classes, self.in_ch, self.image_size = num_classes, in_ch, image_size
        self.net = DCGANDiscriminator(in_ch + 1, ndf, image_size, norm, fused)
        self.embed = nn.Embedding(num_classes, image_size * image_size)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, self.in_ch, self.image_size)
        check_labels(labels, self.num_classes, images.shape[0])
        label_map = self.embed(labels).view(-1, 1, self.image_size, self.image_size)
        return self.net(torch.cat([images, label_map], 1))
