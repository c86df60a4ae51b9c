"""What the training benchmark times: one trainer step of a GAN, in two configurations.

Both configurations run fastgan.train.train_step, the trainer's own step (G forward, D
step on the real and the detached fake, G step with adversarial + lambda * L1 for
pix2pix), on networks built from the same seed, so they start from identical weights
and differ only in what the configuration names: layers, losses, precision, memory
layout and optimizer. Batches are made once, on the device: loaders are the data suite's
business, and the same torch DataLoader would feed both sides.
"""
from __future__ import annotations

import itertools
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from fastgan.config import Config
from fastgan.cuda_graph import WARMUP_STEPS
from fastgan.families import build_family
from fastgan.train import LossWatch, graphed_train_step, train_step

FAMILIES = ("pix2pix", "dcgan")


@dataclass(frozen=True)
class TrainCase:
    """One network pair and batch. `stands_for` names the issue's shape a reduced case replaces."""

    family: str
    image_size: int
    batch: int
    width: int = 64  # ngf = ndf
    stands_for: str | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {self.family!r}")

    @property
    def num_downs(self) -> int | None:
        """pix2pix's U-Net depth for the image size (8 for 256^2: unet_256), down to a 1x1 bottleneck."""
        return self.image_size.bit_length() - 1 if self.family == "pix2pix" else None

    @property
    def label(self) -> str:
        text = f"{self.family} {self.image_size}x{self.image_size} batch {self.batch}"
        return text if self.width == 64 else f"{text} width {self.width}"

    def as_dict(self) -> dict:
        return {**asdict(self), "num_downs": self.num_downs, "label": self.label}


# The shapes: pix2pix's unet_256 + 70x70 PatchGAN, and DCGAN at 64^2 (pytorch/examples).
FULL_CASES = (TrainCase("pix2pix", 256, 1), TrainCase("pix2pix", 256, 16), TrainCase("dcgan", 64, 128))


@dataclass(frozen=True)
class TrainConfig:
    """How the networks run: the part of a training setup the comparison is about."""

    name: str
    fused: bool  # fused BN+activation layers and fused GAN losses, else stock layers and nn.BCEWithLogitsLoss
    precision: str  # "fp32" or "bf16" (autocast)
    channels_last: bool
    fused_adam: bool
    cuda_graph: bool = False  # the trainer's --train.cuda_graph: the step captured once and replayed

    def describe(self) -> dict:
        return {"layers": "fastgan fused BatchNorm+activation" if self.fused else "nn.BatchNorm2d + nn.LeakyReLU/ReLU",
                "losses": "fastgan.nn.PatchGANLoss (fused ops)" if self.fused
                else "nn.BCEWithLogitsLoss against expanded 1/0 targets (autograd)",
                "precision": "bf16 autocast" if self.precision == "bf16" else "fp32",
                "memory_format": "channels_last" if self.channels_last else "NCHW",
                "optimizer": ("torch.optim.Adam(fused=True" + (", capturable=True)" if self.cuda_graph else ")"))
                if self.fused_adam else "torch.optim.Adam (default implementation)",
                "step": (f"captured in a CUDA graph after {WARMUP_STEPS} eager steps, then replayed (the trainer's "
                         f"--train.cuda_graph)") if self.cuda_graph else "eager"}


REFERENCE = TrainConfig("reference", fused=False, precision="fp32", channels_last=False, fused_adam=False)
CPU_PRECISION_NOTE = ("fastgan runs fp32 on CPU: bf16 convolutions are slower than fp32 on CPUs without AMX, so "
                      "the CPU comparison isolates fused layers, fused losses, channels_last and fused Adam; "
                      "on CUDA it runs bf16 autocast")


def fastgan_config(device: str) -> TrainConfig:
    cuda = device == "cuda"
    return TrainConfig("fastgan", fused=True, precision="bf16" if cuda else "fp32", channels_last=True,
                       fused_adam=True, cuda_graph=cuda)


class EagerGANLoss:
    """pix2pix's reference GANLoss("vanilla"): BCEWithLogitsLoss against a 0-dim 1 or 0
    expanded to the logits' shape, with the PatchGANLoss interface the families call."""

    def __init__(self, device: str):
        self.bce = nn.BCEWithLogitsLoss()
        self.real = torch.tensor(1.0, device=device)
        self.fake = torch.tensor(0.0, device=device)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.bce(real_logits, self.real.expand_as(real_logits)) + self.bce(fake_logits,
                                                                                 self.fake.expand_as(fake_logits))

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return self.bce(fake_logits, self.real.expand_as(fake_logits))


def _config(case: TrainCase, fused: bool) -> Config:
    cfg = Config()
    cfg.model.family, cfg.model.fused = case.family, fused
    cfg.model.ngf = cfg.model.ndf = case.width
    if case.num_downs is not None:
        cfg.model.num_downs = case.num_downs
    cfg.data.crop_size = case.image_size
    return cfg


def make_batch(case: TrainCase, device: str, channels_last: bool, seed: int = 0) -> dict:
    """Images in [-1, 1], the same values for every configuration."""
    gen = torch.Generator().manual_seed(seed)
    shape = (case.batch, 3, case.image_size, case.image_size)
    keys = ("A", "B") if case.family == "pix2pix" else ("image",)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {key: (torch.rand(shape, generator=gen) * 2 - 1).to(device).contiguous(memory_format=fmt) for key in keys}


def build_trainer_step(case: TrainCase, config: TrainConfig, device: str, seed: int = 0) -> Callable[[dict], dict]:
    """A callable doing one trainer step (D then G) of `case` in `config` on the batch it is given."""
    torch.manual_seed(seed)  # identical initial weights in every configuration
    family = build_family(_config(case, config.fused))
    if not config.fused:
        family.gan_loss = EagerGANLoss(device)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    for model in family.models.values():
        model.to(device, memory_format=fmt).train()
    adam = dict(lr=2e-4, betas=(0.5, 0.999), **({"fused": True} if config.fused_adam else {}),
                **({"capturable": True} if config.cuda_graph else {}))
    optimizers = {role: torch.optim.Adam(model.parameters(), **adam) for role, model in family.models.items()}
    scalers = {role: torch.amp.GradScaler(device, enabled=False) for role in optimizers}
    autocast = ((lambda: torch.autocast(device, dtype=torch.bfloat16, cache_enabled=not config.cuda_graph))
                if config.precision == "bf16" else nullcontext)
    D = family.models["D"]
    nets = {"G": family.models["G"], "D": D, "D_plain": D, "D_eager": D}
    steps = itertools.count()
    watch = LossWatch(every=2 * Config().train.log_every)  # as often as the trainer reads its losses
    if config.cuda_graph:
        graphed = graphed_train_step(family, nets, optimizers, scalers, autocast, watch)
        return lambda batch: graphed(batch, next(steps))

    def step(batch: dict) -> dict:
        return train_step(family, nets, optimizers, scalers, autocast, batch, None, next(steps), watch)
    return step


def build_step(case: TrainCase, config: TrainConfig, device: str, seed: int = 0) -> Callable[[], dict]:
    """A no-argument callable doing one trainer step of `case` in `config` on a fixed batch."""
    trainer_step = build_trainer_step(case, config, device, seed)
    batch = make_batch(case, device, config.channels_last, seed)
    return lambda: trainer_step(batch)
