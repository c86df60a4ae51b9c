"""Building blocks shared by every model family: norm choice, weight init, fusion.

Models are built from stock layers (Conv2d, BatchNorm2d, LeakyReLU/ReLU) inside
nn.Sequential containers, so that `fuse_bn_act` can swap each BatchNorm + activation
pair for the fused module afterwards without moving a single state_dict key: a stock
(fused=False) checkpoint and a fused one are interchangeable.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from fastgan.nn import BatchNormLeakyReLU2d, fuse_bn_act

NORMS = ("batch", "instance", "layer", "none")


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")


def check_positive(**values: int) -> None:
    """Raises for sizes that would otherwise surface as an obscure shape error deep in a conv."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The pix2pix reference's choices: BatchNorm with affine and running statistics,
    InstanceNorm without either, or nothing (an Identity keeps the Sequential's indices);
    and layer norm over (C, H, W) with a per-channel affine, the WGAN-GP paper's critic norm."""
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def batch_normalized(model: nn.Module) -> bool:
    """Whether the model normalizes with batch statistics (stock, fused or synchronized),
    which couple the samples of a batch."""
    return any(isinstance(m, (_BatchNorm, BatchNormLeakyReLU2d)) for m in model.modules())


def conv_bias(norm: str) -> bool:
    """A bias right before BatchNorm is cancelled by the mean subtraction, so those convs
    go without one; with instance, layer or no norm they keep it (layer norm subtracts one
    mean over all channels, which does not cancel a per-channel bias)."""
    return norm != "batch"


def init_weights_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN / pix2pix initialization: conv weights N(0, std), BatchNorm scales N(1, std), biases 0;
    layer norm (GroupNorm) keeps its 1 and 0, as the reference leaves every norm but BatchNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NormBase) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


def init_and_fuse_(model: nn.Module, norm: str, fused: bool, std: float = 0.02) -> nn.Module:
    """Initializes model, then fuses its BatchNorm + activation pairs when asked (batch norm only)."""
    init_weights_(model, std)
    if fused and norm == "batch":
        fuse_bn_act(model)
    return model
