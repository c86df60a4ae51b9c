"""LAPGAN (Denton et al.): one generator/discriminator pair per level of a Laplacian pyramid.

Levels count from the coarsest (0) to the full image (levels - 1), each twice the side of
the one before. Level 0 is a plain GAN on tiny images: fully connected networks as in the
paper (G: 2 hidden layers of 1200 ReLU units; D: 2 of 600 with dropout). Every finer
level k is conditioned on l = upsample(I_{k-1}), the coarser image blown up to its size:
G_k turns (l, a noise plane) into the band-pass residual h_k that `reconstruct` adds to l,
and D_k scores a band given l. Those convnets (G: 3 layers, D: 2 and a linear head, 5x5
kernels) have BatchNorm followed by ReLU / LeakyReLU(0.2): the fused BatchNorm+activation
module when fused=True, stock layers with the same state_dict keys otherwise.

With num_classes > 0 every network also sees the class: a one-hot vector appended to the
MLPs' inputs, and, in the convnets, a learned image-sized plane per class (a linear map of
the one-hot vector) concatenated to the input channels, as in the paper's class-conditional
CIFAR-10 model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..pyramid import upsample
from .conditional import check_labels
from .layers import check_norm, check_positive, conv_bias, init_and_fuse_, norm_layer

BASE_G_HIDDEN, BASE_D_HIDDEN = 1200, 600


def _check_input(x: torch.Tensor, name: str, shape: tuple[int, ...]) -> None:
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name} must have shape [N, {', '.join(map(str, shape))}]; got {tuple(x.shape)}")


def _check_labels(labels: torch.Tensor | None, num_classes: int, batch: int) -> None:
    if num_classes == 0:
        if labels is not None:
            raise ValueError("labels given to an unconditional LAPGAN network (built with num_classes=0)")
        return
    if labels is None:
        raise ValueError(f"this LAPGAN network is class-conditional ({num_classes} classes) and needs labels")
    check_labels(labels, num_classes, batch)


def _check_sizes(channels: int, image_size: int, num_classes: int) -> None:
    check_positive(channels=channels, image_size=image_size)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be 0 (unconditional) or a positive int, got {num_classes!r}")


class BaseGenerator(nn.Module):
    """Level 0: (z [N, nz], labels [N] or None) -> image [N, channels, image_size, image_size] in [-1, 1]."""

    def __init__(self, nz: int = 100, channels: int = 3, image_size: int = 8, hidden: int = BASE_G_HIDDEN,
                 num_classes: int = 0):
        super().__init__()
        _check_sizes(channels, image_size, num_classes)
        check_positive(nz=nz, hidden=hidden)
        self.nz, self.num_classes = nz, num_classes
        self.image_shape = (channels, image_size, image_size)
        self.noise_shape = (nz,)
        self.main = nn.Sequential(nn.Linear(nz + num_classes, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, channels * image_size * image_size), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_input(z, "z", self.noise_shape)
        _check_labels(labels, self.num_classes, z.shape[0])
        if labels is not None:
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], 1)
        return self.main(z).view(z.shape[0], *self.image_shape)


class BaseDiscriminator(nn.Module):
    """Level 0: (image [N, channels, image_size, image_size], labels) -> one logit per image, [N]."""

    def __init__(self, channels: int = 3, image_size: int = 8, hidden: int = BASE_D_HIDDEN, dropout: float = 0.5,
                 num_classes: int = 0):
        super().__init__()
        _check_sizes(channels, image_size, num_classes)
        check_positive(hidden=hidden)
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)
        self.main = nn.Sequential(nn.Linear(channels * image_size * image_size + num_classes, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_input(images, "images", self.image_shape)
        _check_labels(labels, self.num_classes, images.shape[0])
        x = images.reshape(images.shape[0], -1)
        if labels is not None:
            x = torch.cat([x, F.one_hot(labels, self.num_classes).to(x.dtype)], 1)
        return self.main(x).reshape(images.shape[0])


class _ClassPlane(nn.Module):
    """A learned image_size x image_size plane per class: the paper's linear map of the one-hot label."""

    def __init__(self, num_classes: int, image_size: int):
        super().__init__()
        self.image_size = image_size
        self.embed = nn.Embedding(num_classes, image_size * image_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embed(labels).view(-1, 1, self.image_size, self.image_size)


class BandGenerator(nn.Module):
    """Level k > 0: (z [N, 1, S, S], coarse = upsample(I_{k-1}) [N, C, S, S], labels) -> band h_k [N, C, S, S].

    The noise is one extra input plane, as in the paper; the output is linear, since a band
    holds differences of both signs.
    """

    def __init__(self, channels: int = 3, image_size: int = 16, ngf: int = 128, num_classes: int = 0,
                 norm: str = "batch", fused: bool = True):
        super().__init__()
        _check_sizes(channels, image_size, num_classes)
        check_positive(ngf=ngf)
        check_norm(norm)
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)
        self.noise_shape = (1, image_size, image_size)
        self.class_plane = _ClassPlane(num_classes, image_size) if num_classes else None
        bias = conv_bias(norm)
        in_ch = channels + 1 + (1 if num_classes else 0)
        self.main = nn.Sequential(nn.Conv2d(in_ch, ngf, 5, 1, 2, bias=bias), norm_layer(norm, ngf), nn.ReLU(),
                                  nn.Conv2d(ngf, ngf, 5, 1, 2, bias=bias), norm_layer(norm, ngf), nn.ReLU(),
                                  nn.Conv2d(ngf, channels, 5, 1, 2))
        init_and_fuse_(self, norm, fused)

    def forward(self, z: torch.Tensor, coarse: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_input(z, "z", self.noise_shape)
        _check_input(coarse, "coarse", self.image_shape)
        _check_labels(labels, self.num_classes, z.shape[0])
        inputs = [coarse, z.to(coarse.dtype)]
        if self.class_plane is not None:
            inputs.append(self.class_plane(labels).to(coarse.dtype))
        return self.main(torch.cat(inputs, 1))


class BandDiscriminator(nn.Module):
    """Level k > 0: (band [N, C, S, S], coarse [N, C, S, S], labels) -> one logit per image, [N]."""

    def __init__(self, channels: int = 3, image_size: int = 16, ndf: int = 128, num_classes: int = 0,
                 norm: str = "batch", fused: bool = True):
        super().__init__()
        _check_sizes(channels, image_size, num_classes)
        check_positive(ndf=ndf)
        check_norm(norm)
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 (two stride-2 convolutions); got {image_size}")
        self.num_classes = num_classes
        self.image_shape = (channels, image_size, image_size)
        self.class_plane = _ClassPlane(num_classes, image_size) if num_classes else None
        in_ch = 2 * channels + (1 if num_classes else 0)
        self.main = nn.Sequential(nn.Conv2d(in_ch, ndf, 5, 2, 2), nn.LeakyReLU(0.2),
                                  nn.Conv2d(ndf, 2 * ndf, 5, 2, 2, bias=conv_bias(norm)), norm_layer(norm, 2 * ndf),
                                  nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * ndf * (image_size // 4) ** 2, 1))
        init_and_fuse_(self, norm, fused)

    def forward(self, band: torch.Tensor, coarse: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_input(band, "band", self.image_shape)
        _check_input(coarse, "coarse", self.image_shape)
        _check_labels(labels, self.num_classes, band.shape[0])
        inputs = [band, coarse.to(band.dtype)]
        if self.class_plane is not None:
            inputs.append(self.class_plane(labels).to(band.dtype))
        return self.main(torch.cat(inputs, 1)).reshape(band.shape[0])


def level_generator(level: int, **kwargs) -> nn.Module:
    """The generator of one pyramid level: BaseGenerator at level 0, BandGenerator above."""
    check_level(level)
    return BaseGenerator(**kwargs) if level == 0 else BandGenerator(**kwargs)


def level_discriminator(level: int, **kwargs) -> nn.Module:
    """The discriminator of one pyramid level: BaseDiscriminator at level 0, BandDiscriminator above."""
    check_level(level)
    return BaseDiscriminator(**kwargs) if level == 0 else BandDiscriminator(**kwargs)


def check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be a non-negative int, got {level!r}")


class LaplacianPyramidGenerator(nn.Module):
    """All levels' generators as one noise -> full-resolution image generator, sampled coarse to fine.

    Its latent vector is every level's noise flattened and concatenated (nz for level 0,
    then S_k x S_k per finer level), so one z [N, latent_size] fixes one image: the
    sampling tools treat it like a DCGAN generator.
    """

    def __init__(self, generators: list[nn.Module]):
        super().__init__()
        if not generators or not isinstance(generators[0], BaseGenerator) or not all(
                isinstance(g, BandGenerator) for g in generators[1:]):
            raise ValueError("a LAPGAN pyramid is a BaseGenerator (level 0) followed by BandGenerators")
        for k, (coarse, fine) in enumerate(zip(generators, generators[1:]), start=1):
            c, s = coarse.image_shape[0], coarse.image_shape[1]
            if fine.image_shape != (c, 2 * s, 2 * s) or fine.num_classes != generators[0].num_classes:
                raise ValueError(f"level {k} generates {fine.image_shape} images ({fine.num_classes} classes); after "
                                 f"level {k - 1}'s {coarse.image_shape} it must generate {(c, 2 * s, 2 * s)} "
                                 f"({generators[0].num_classes} classes)")
        self.levels = nn.ModuleList(generators)
        self.num_classes = generators[0].num_classes
        self.noise_sizes = [int(torch.Size(g.noise_shape).numel()) for g in generators]
        self.latent_size = sum(self.noise_sizes)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.pyramid(z, labels)[-1]

    def pyramid(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Every level's image, coarse to fine: I_0 = G_0(z_0), I_k = l + G_k(z_k, l) with l = upsample(I_{k-1})."""
        _check_input(z, "z", (self.latent_size,))
        chunks = z.split(self.noise_sizes, 1)
        images = [self.levels[0](chunks[0], labels)]
        for G, chunk in zip(self.levels[1:], chunks[1:]):
            coarse = upsample(images[-1])
            images.append(coarse + G(chunk.reshape(-1, *G.noise_shape), coarse, labels))
        return images


__all__ = ["BaseGenerator", "BaseDiscriminator", "BandGenerator", "BandDiscriminator", "LaplacianPyramidGenerator",
           "level_generator", "level_discriminator", "check_level", "BASE_G_HIDDEN", "BASE_D_HIDDEN"]
