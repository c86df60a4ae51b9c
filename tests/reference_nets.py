"""Stock-layer networks written from the pix2pix reference, and BatchNorm state worth testing.

Independent of fastgan/models on purpose: the conversion, fusion and model tests compare
fastgan's networks against these.
"""
from __future__ import annotations

import torch
from torch import nn


def reference_patchgan_layers(input_nc: int, ndf: int, n_layers: int) -> list[nn.Module]:
    """The reference NLayerDiscriminator with batch norm, layer by layer (its `model` Sequential)."""
    layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2 ** n, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                   nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2 ** n_layers, 8)
    layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult),
               nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return layers


def randomize_bn_state(model: nn.Module) -> nn.Module:
    """Non-trivial BN scales, shifts and running statistics, so eval mode and key mappings test something."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model
