"""Generators and discriminators, one module per family, and a registry to rebuild them.

A checkpoint stores `family`, `model_args` ({role: kwargs}) and `models` ({role:
state_dict}); `build_model(family, role, **model_args[role])` gives back the module that
state_dict loads into. Stock (fused=False) and fused models share state_dict keys.
"""
from __future__ import annotations

import inspect

from torch import nn

from .conditional import ConditionalDiscriminator, ConditionalGenerator, class_grid_labels
from .dcgan import IMAGE_SIZES, DCGANDiscriminator, DCGANGenerator
from .gancls import MatchingAwareDiscriminator, TextConditionedGenerator
from .lapgan import LaplacianPyramidGenerator, level_discriminator, level_generator
from .layers import NORMS, batch_normalized, init_weights_
from .pix2pix import PATCH_SIZES, PatchDiscriminator, UNetGenerator
from .srgan import SCALES, SRGANDiscriminator, SRResNetGenerator, discriminator_pool_size

MODELS = {
    "pix2pix": {"G": UNetGenerator, "D": PatchDiscriminator},
    "dcgan": {"G": DCGANGenerator, "D": DCGANDiscriminator},
    "conditional": {"G": ConditionalGenerator, "D": ConditionalDiscriminator},
    "srresnet": {"G": SRResNetGenerator, "D": SRGANDiscriminator},
    "srgan": {"G": SRResNetGenerator, "D": SRGANDiscriminator},
    "gancls": {"G": TextConditionedGenerator, "D": MatchingAwareDiscriminator},
    "lapgan": {"G": level_generator, "D": level_discriminator},
}


def build_model(family: str, role: str, **kwargs) -> nn.Module:
    """MODELS[family][role](**kwargs), with errors that list the valid families and roles."""
    if family not in MODELS:
        raise ValueError(f"unknown model family {family!r}; valid families: {', '.join(MODELS)}")
    roles = MODELS[family]
    if role not in roles:
        raise ValueError(f"unknown role {role!r} for family {family!r}; valid roles: {', '.join(roles)}")
    return roles[role](**kwargs)


def with_defaults(family: str, role: str, kwargs: dict) -> dict:
    """kwargs plus the constructor defaults they leave out: a checkpoint written before an
    argument existed describes the same network as one that spells its default out."""
    params = inspect.signature(MODELS[family][role]).parameters.values()
    defaults = {p.name: p.default for p in params
                if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
    return {**defaults, **kwargs}


__all__ = ["MODELS", "build_model", "with_defaults", "UNetGenerator", "PatchDiscriminator", "DCGANGenerator",
           "DCGANDiscriminator", "ConditionalGenerator", "ConditionalDiscriminator", "class_grid_labels",
           "init_weights_", "batch_normalized", "NORMS", "PATCH_SIZES", "IMAGE_SIZES", "SRResNetGenerator",
           "SRGANDiscriminator", "SCALES", "discriminator_pool_size", "TextConditionedGenerator",
           "MatchingAwareDiscriminator", "LaplacianPyramidGenerator", "level_generator", "level_discriminator"]
