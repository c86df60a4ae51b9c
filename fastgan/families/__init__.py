"""What differs between GAN families, behind one small interface the trainer drives.

A family builds its networks from the config and says how to turn a batch into fakes
(`generate`), how the discriminator is scored (`d_loss`) and how the generator is
scored (`g_loss`). Everything else (devices, DDP, precision, optimizers, schedules,
checkpoints, logging) belongs to the training loop in fastgan/train.py.
"""
from __future__ import annotations

from ..config import Config
from .base import Family
from .conditional import ConditionalFamily
from .dcgan import DCGANFamily
from .gancls import GANCLSFamily
from .lapgan import LAPGANFamily
from .pix2pix import Pix2PixFamily
from .srgan import SRGANFamily, SRResNetFamily

FAMILIES: dict[str, type[Family]] = {"pix2pix": Pix2PixFamily, "dcgan": DCGANFamily,
                                     "conditional": ConditionalFamily, "srresnet": SRResNetFamily,
                                     "srgan": SRGANFamily, "gancls": GANCLSFamily,
                                     "lapgan": LAPGANFamily}


def build_family(cfg: Config) -> Family:
    return FAMILIES[cfg.model.family](cfg)


__all__ = ["Family", "FAMILIES", "build_family", "Pix2PixFamily", "DCGANFamily", "ConditionalFamily",
           "SRResNetFamily", "SRGANFamily", "GANCLSFamily", "LAPGANFamily"]
