"""LAPGAN: one run trains one pyramid level (`model.level`); the sampler stacks the levels' checkpoints.

The levels are independent GANs (each level's real data comes from the real pyramid, not
from the coarser generator), so they train in separate runs, in parallel or one after the
other, and each checkpoint holds only its level's G and D. Level 0 is an unconditional (or
class-conditional) GAN on the coarsest images; a finer level's generator produces the
band that turns the upsampled coarser image into its own, and its discriminator scores
bands given that coarser image. `load_pyramid` checks that a set of checkpoints forms one
pyramid and joins their generators for `python -m fastgan.sample`.
"""
from __future__ import annotations

import torch

from .. import checkpoint as ckpt_io
from ..config import Config, discriminator_norm
from ..models.lapgan import BASE_D_HIDDEN, BASE_G_HIDDEN, LaplacianPyramidGenerator, level_generator
from .base import Family

# Fields of a level checkpoint's config that every level of one pyramid must share.
PYRAMID_KEYS = (("data", "crop_size"), ("model", "levels"), ("model", "channels"), ("model", "class_conditional"),
                ("model", "num_classes"))


def level_size(image_size: int, levels: int, level: int) -> int:
    """Side of pyramid level `level` (0 = coarsest) over image_size x image_size images."""
    return image_size // 2 ** (levels - 1 - level)


class LAPGANFamily(Family):
    name = "lapgan"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m = cfg.model
        self.level, self.conditional = m.level, m.class_conditional
        size, coarsest = (level_size(cfg.data.crop_size, m.levels, k) for k in (m.level, 0))
        what = (f"the base GAN on {size}x{size} images" if m.level == 0 else
                f"the {size}x{size} band given the upsampled {size // 2}x{size // 2} level")
        condition = f", conditioned on {m.num_classes} classes" if self.conditional else ""
        self.notes = [f"lapgan level {m.level} of {m.levels} ({coarsest}->{cfg.data.crop_size}): "
                      f"{what}{condition}"]

    @staticmethod
    def build_args(cfg: Config) -> dict[str, dict]:
        m = cfg.model
        common = dict(level=m.level, channels=m.channels, image_size=level_size(cfg.data.crop_size, m.levels, m.level),
                      num_classes=m.num_classes if m.class_conditional else 0)
        if m.level == 0:
            return {"G": dict(common, nz=m.nz, hidden=BASE_G_HIDDEN), "D": dict(common, hidden=BASE_D_HIDDEN)}
        convs = dict(common, fused=m.fused)
        return {"G": dict(convs, ngf=m.ngf, norm=m.norm), "D": dict(convs, ndf=m.ndf, norm=discriminator_norm(m))}

    def images_seen(self, batch):
        return batch["image"].shape[0]

    def labels(self, batch: dict) -> torch.Tensor | None:
        return batch["label"] if self.conditional else None

    def noise(self, n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (n, *self.models["G"].noise_shape)
        if generator is None:
            return torch.randn(shape, device=device)
        return torch.randn(shape, generator=generator).to(device)  # fixed CPU stream: the same grid on any device

    def real(self, batch: dict) -> torch.Tensor:
        """What the generator imitates: the level-0 image, or a finer level's band."""
        return batch["image"] if self.level == 0 else batch["image"] - batch["coarse"]

    def generate(self, G, batch):
        z = self.noise(batch["image"].shape[0], batch["image"].device)
        if self.level == 0:
            return G(z, self.labels(batch))
        return G(z, batch["coarse"], self.labels(batch))

    def critic(self, D, batch, images):
        if self.level == 0:
            return D(images, self.labels(batch))
        return D(images, batch["coarse"], self.labels(batch))

    @torch.no_grad()
    def sample_rows(self, G, batch):
        """Level 0: 4 rows of fixed noise (conditional: one row per class). Finer levels, for 8 training
        images: the upsampled coarser image, it plus the generated band, the real image at this level."""
        device = batch["image"].device
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        if self.level > 0:
            n = min(8, batch["image"].shape[0])
            coarse, labels = batch["coarse"][:n], (batch["label"][:n] if self.conditional else None)
            fake = coarse + G(self.noise(n, device, g), coarse, labels)
            return [coarse, fake, batch["image"][:n]]
        if self.conditional:
            classes = self.cfg.model.num_classes
            labels = torch.arange(classes, device=device).repeat_interleave(8)
            return list(G(self.noise(8, device, g).repeat(classes, 1), labels).split(8))
        return list(G(self.noise(32, device, g)).split(8))


def load_pyramid(paths: list[str], device: torch.device, ema: bool = True) -> LaplacianPyramidGenerator:
    """The generators of one LAPGAN pyramid, one level per checkpoint (in any order), joined for sampling.

    Refuses, naming the files, checkpoints that are not lapgan, levels missing or given
    twice, and levels trained for different pyramids (image size, levels, channels, classes).
    """
    by_level: dict[int, tuple[str, dict]] = {}
    reference = None
    for path in paths:
        try:
            ckpt = ckpt_io.load(path, map_location="cpu")
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"--checkpoint: {e}") from None
        if ckpt["family"] != "lapgan":
            raise SystemExit(f"--checkpoint {path} holds a {ckpt['family']} model; several checkpoints are the levels "
                             f"of a lapgan pyramid")
        settings = {f"{section}.{key}": ckpt["config"][section][key] for section, key in PYRAMID_KEYS}
        if reference is None:
            reference = (path, settings)
        elif settings != reference[1]:
            differ = ", ".join(f"{k} {reference[1][k]!r} vs {v!r}" for k, v in settings.items() if v != reference[1][k])
            raise SystemExit(f"--checkpoint {path} belongs to another pyramid than {reference[0]}: {differ}")
        level = ckpt["model_args"]["G"]["level"]
        if level in by_level:
            raise SystemExit(f"--checkpoint {path} and {by_level[level][0]} both hold level {level}")
        by_level[level] = (path, ckpt)
    levels = reference[1]["model.levels"]
    missing = [k for k in range(levels) if k not in by_level]
    if missing:
        raise SystemExit(f"the pyramid has {levels} levels; no --checkpoint holds level(s) "
                         f"{', '.join(map(str, missing))} (given: {', '.join(map(str, paths))})")
    generators = []
    for level in range(levels):
        ckpt = by_level[level][1]
        G = level_generator(**ckpt["model_args"]["G"])
        weights = ckpt["models"].get("G_ema") if ema else None
        G.load_state_dict(weights if weights is not None else ckpt["models"]["G"])
        generators.append(G)
    return LaplacianPyramidGenerator(generators).to(device).eval()


__all__ = ["LAPGANFamily", "level_size", "load_pyramid"]
