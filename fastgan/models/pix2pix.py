"""pix2pix: the U-Net generator and the PatchGAN (Markovian) discriminator.

Both follow the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix) layer
for layer, so its checkpoints convert (fastgan.convert) and give the same outputs.

The U-Net is written flat, as encoder and decoder stages, rather than as the reference's
nested skip blocks. The reference's in-place activations decide what actually flows:
each skip block starts with an in-place LeakyReLU(0.2) on its input, which also rewrites
the tensor it later concatenates, and the parent's up path starts with an in-place ReLU
on that concatenation. Since ReLU(LeakyReLU(h)) = ReLU(h), and ReLU commutes with
concatenation and with dropout, the same function is:

    e_k = LeakyReLU(BN(conv(e_{k-1})))                  encoder: fused BN + LeakyReLU(0.2)
    d_k = Dropout(ReLU(BN(convT(cat[ReLU(e_k), d_{k+1}]))))   decoder: fused BN + ReLU

with the innermost encoder stage ending in a plain ReLU and the outermost decoder stage
in Tanh. Dropout draws its masks in the same order as the reference (innermost first).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_norm, check_positive, conv_bias, init_and_fuse_, norm_layer

MIN_NUM_DOWNS = 5


class UNetGenerator(nn.Module):
    """pix2pix's U-Net (`unet_256` for num_downs=8, `unet_128` for 7); input H and W must
    be multiples of 2**num_downs.

    Level k (0 = outermost) has ngf * min(2**k, 8) feature channels. Dropout(0.5), the
    paper's only noise source, sits in the num_downs - 5 decoder stages between the
    innermost one and the first ngf*8 -> ngf*4 one (three for unet_256), as in the reference.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, num_downs: int = 8, ngf: int = 64, norm: str = "batch",
                 dropout: bool = True, fused: bool = True):
        super().__init__()
        check_positive(in_ch=in_ch, out_ch=out_ch, ngf=ngf)
        check_norm(norm)
        if isinstance(num_downs, bool) or not isinstance(num_downs, int) or num_downs < MIN_NUM_DOWNS:
            raise ValueError(f"num_downs must be an integer >= {MIN_NUM_DOWNS} (8 for 256x256 input, "
                             f"7 for 128x128), got {num_downs!r}")
        self.num_downs = num_downs
        bias = conv_bias(norm)
        inner = [ngf * min(2 ** k, 8) for k in range(num_downs)]
        outer = [out_ch] + inner[:-1]
        innermost = num_downs - 1

        encoder = [nn.Sequential(nn.Conv2d(in_ch, inner[0], 4, 2, 1, bias=bias), nn.LeakyReLU(0.2))]
        for k in range(1, innermost):
            encoder.append(nn.Sequential(nn.Conv2d(inner[k - 1], inner[k], 4, 2, 1, bias=bias),
                                         norm_layer(norm, inner[k]), nn.LeakyReLU(0.2)))
        encoder.append(nn.Sequential(nn.Conv2d(inner[innermost - 1], inner[innermost], 4, 2, 1, bias=bias),
                                     nn.ReLU()))

        decoder = [nn.Sequential(nn.ConvTranspose2d(inner[0] * 2, out_ch, 4, 2, 1), nn.Tanh())]
        for k in range(1, num_downs):
            in_features = inner[k] if k == innermost else inner[k] * 2
            stage = [nn.ConvTranspose2d(in_features, outer[k], 4, 2, 1, bias=bias), norm_layer(norm, outer[k]),
                     nn.ReLU()]
            if dropout and 4 <= k < innermost:
                stage.append(nn.Dropout(0.5))
            decoder.append(nn.Sequential(*stage))

        self.encoder = nn.ModuleList(encoder)
        self.decoder = nn.ModuleList(decoder)
        init_and_fuse_(self, norm, fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2 ** self.num_downs
        if x.dim() != 4 or x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"UNetGenerator with num_downs={self.num_downs} needs [N, C, H, W] input with H and W "
                             f"divisible by 2**{self.num_downs} = {multiple}; got size {tuple(x.shape)}")
        skips = []
        for stage in self.encoder[:-1]:
            x = stage(x)
            skips.append(x)
        x = self.decoder[-1](self.encoder[-1](x))
        for stage, skip in zip(reversed(self.decoder[:-1]), reversed(skips)):
            x = stage(torch.cat([F.relu(skip), x], 1))
        return x


PATCH_SIZES = {1: 0, 16: 1, 34: 2, 70: 3, 142: 4, 286: 5}
"""Receptive field (patch size) -> n_layers; n_layers=0 is the 1x1 PixelGAN."""


class PatchDiscriminator(nn.Module):
    """The conditional PatchGAN: one real/fake logit per receptive-field patch, [N, 1, H', W'].

    The caller concatenates condition and image (in_ch = 3 + 3). n_layers counts the
    stride-2 convs (3 gives the 70x70 PatchGAN); n_layers=0 is the reference's 1x1
    PixelGAN. The module keeps the reference's `model.<i>` layout, so its checkpoints
    load as they are. Its LeakyReLUs work in place, as the reference's do: nothing else
    reads the conv or norm output they overwrite, so autograd keeps one map less per layer.
    """

    def __init__(self, in_ch: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch", fused: bool = True):
        super().__init__()
        check_positive(in_ch=in_ch, ndf=ndf)
        check_norm(norm)
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
            raise ValueError(f"n_layers must be an integer >= 0 (0 = PixelGAN), got {n_layers!r}")
        bias = conv_bias(norm)
        if n_layers == 0:
            layers = [nn.Conv2d(in_ch, ndf, 1), nn.LeakyReLU(0.2, inplace=True),
                      nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(norm, ndf * 2), nn.LeakyReLU(0.2, inplace=True),
                      nn.Conv2d(ndf * 2, 1, 1, bias=bias)]
        else:
            layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            mult = 1
            for n in range(1, n_layers + 1):
                prev, mult = mult, min(2 ** n, 8)
                stride = 2 if n < n_layers else 1
                layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias), norm_layer(norm, ndf * mult),
                           nn.LeakyReLU(0.2, inplace=True)]
            layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        init_and_fuse_(self, norm, fused)

    @property
    def receptive_field(self) -> int:
        """Input pixels (per side) that one output logit sees, from the conv stack."""
        field, jump = 1, 1
        for layer in self.model:
            if isinstance(layer, nn.Conv2d):
                field += (layer.kernel_size[0] - 1) * layer.dilation[0] * jump
                jump *= layer.stride[0]
        return field

    @classmethod
    def for_patch_size(cls, p: int, in_ch: int = 6, ndf: int = 64, norm: str = "batch",
                       fused: bool = True) -> "PatchDiscriminator":
        """The pix2pix paper's discriminators by patch size: 1 (PixelGAN) ... 70 ... 286 (ImageGAN at 256^2)."""
        if p not in PATCH_SIZES:
            raise ValueError(f"patch size must be one of {', '.join(map(str, PATCH_SIZES))}; got {p!r}")
        return cls(in_ch=in_ch, ndf=ndf, n_layers=PATCH_SIZES[p], norm=norm, fused=fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
