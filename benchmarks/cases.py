"""The work both benchmark front ends time: cases, the three implementations, byte models.

benchmarks.run and the pytest-benchmark suites build their callables here, so a number
from one is comparable with a number from the other.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

IMPLS = ("eager", "compiled", "fused")  # eager first: the others' ratios need its time
# mapillary's inplace_abn, the best-known fused BN+activation, timed beside ours when installed.
PEER_IMPLS = ("inplace_abn", "abn")
# What the others are compared against: each row holds x_<name> = that name's time / its own.
REFERENCE_IMPLS = ("eager", "compiled") + PEER_IMPLS
# A helper step, not a row: the clone of x that InPlaceABN's fwd+bwd step makes, timed to be taken out.
CLONE = "clone"
PEER_NOTE = ("inplace_abn is InPlaceABN, its fused in-place kernels: it overwrites its input, so its fwd+bwd step "
             "clones x first, and that clone, timed alone in the same rounds, is subtracted round by round "
             "(raw_median_ms and clone_ms keep both); it keeps its parameters in the input's dtype, which its "
             "kernels require. abn is the same library's ABN: F.batch_norm then an in-place F.leaky_relu, "
             "not a fused kernel")
PASSES = ("fwd", "fwd_bwd")
SLOPE = 0.2
LOSS_MODES = ("vanilla", "lsgan")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# The CPU reference shapes ("medium"): the CPU targets are judged on these.
CPU_REFERENCE_SHAPES = ((16, 64, 64, 64), (16, 256, 16, 16), (4, 128, 64, 64))
# pix2pix discriminator / U-Net activations at batch 1 and 16.
PIX2PIX_SHAPES = tuple((n, c, s, s) for n in (1, 16) for c, s in ((64, 128), (128, 64), (256, 32), (512, 16)))
# Big enough to stream from HBM rather than L2: the GPU bandwidth target is judged on these.
LARGE_SHAPES = ((16, 64, 256, 256), (32, 128, 128, 128))
# So small that a call's time is the host's: dispatch, autograd, Python (benchmarks/README.md, "Host overhead").
HOST_OVERHEAD_SHAPE = (2, 8, 4, 4)

BYTE_MODELS = {
    "bn_act": "fwd reads x twice (statistics pass, normalize pass) and writes y once: 3|x|; "
              "fwd+bwd adds the backward's reads of grad_out and of the saved tensor twice each "
              "(reduction pass, grad_input pass) and its write of grad_input once: 8|x| in all",
    "d_loss": "fwd+bwd reads the real and the fake logit maps once and writes both gradients once: "
              "2(|real| + |fake|)",
}
BYTE_MODEL_NOTE = ("|x| is a tensor's size in bytes. Every implementation is charged the same bytes, "
                   "so GB/s ratios equal time ratios.")


@dataclass(frozen=True)
class BnCase:
    """One BatchNorm+LeakyReLU input: shape (N, C, H, W), dtype key, memory layout."""

    shape: tuple[int, int, int, int]
    dtype: str = "fp32"
    layout: str = "NCHW"  # or "NHWC" (channels_last)

    op = "bn_act"

    @property
    def label(self) -> str:
        return f"{'x'.join(map(str, self.shape))} {self.dtype} {self.layout}"

    def nbytes(self, pass_: str) -> int:
        numel = 1
        for dim in self.shape:
            numel *= dim
        size = numel * torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        return size * (3 if pass_ == "fwd" else 8)

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}

    def tensor(self, gen: torch.Generator, device: str) -> torch.Tensor:
        """Standard-normal values from `gen`, in the case's dtype and memory layout on `device`."""
        fmt = torch.channels_last if self.layout == "NHWC" else torch.contiguous_format
        values = torch.randn(self.shape, generator=gen).to(device=device, dtype=DTYPES[self.dtype])
        return values.contiguous(memory_format=fmt)


@dataclass(frozen=True)
class LossCase:
    """One discriminator-loss call: mode and the (N, 1, S, S) logit maps, fp32, fwd+bwd only."""

    mode: str
    n: int
    size: int

    op = "d_loss"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, 1, self.size, self.size)

    @property
    def label(self) -> str:
        return f"{self.mode} {self.n}x1x{self.size}x{self.size}"

    def nbytes(self, pass_: str) -> int:
        return 4 * self.n * self.size * self.size * 4

    def as_dict(self) -> dict:
        return {"mode": self.mode, "shape": list(self.shape), "dtype": "fp32", "layout": "NCHW"}


def loss_cases(ns=(1, 16, 64), sizes=(30, 62), modes=LOSS_MODES) -> list[LossCase]:
    return [LossCase(m, n, s) for m in modes for s in sizes for n in ns]


def peer_impls() -> tuple[str, ...]:
    """PEER_IMPLS when inplace_abn imports, else nothing: the peers are optional."""
    try:
        importlib.import_module("inplace_abn")
    except ImportError:
        return ()
    return PEER_IMPLS


def impls_for(case) -> tuple[str, ...]:
    """The implementations a case times: ours, eager and compiled, plus the peers for BN+act."""
    return IMPLS + (peer_impls() if case.op == "bn_act" else ())


def unsupported_reason(impl: str, case) -> str | None:
    """Why a peer cannot run a case at all (known beforehand, so not timed as an error)."""
    if impl == "inplace_abn" and getattr(case, "dtype", None) == "bf16":
        return "n/a: inplace_abn 1.1.0 has no bfloat16 kernels (its statistics_cuda)"
    return None


def peer_module(impl: str, channels: int) -> nn.Module:
    """inplace_abn's InPlaceABN or ABN with our slope (imported here: the peers are optional)."""
    import inplace_abn

    cls = inplace_abn.InPlaceABN if impl == "inplace_abn" else inplace_abn.ABN
    return cls(channels, activation="leaky_relu", activation_param=SLOPE)


def _compile(module: nn.Module) -> nn.Module:
    """A fresh static-shape compile: reset so no row runs on another row's cached graph
    or hits dynamo's recompile limit and silently falls back to eager."""
    torch._dynamo.reset()
    return torch.compile(module, dynamic=False)


def bn_step(impl: str, case: BnCase, pass_: str, device: str) -> Callable[[], object]:
    """A no-argument callable doing one training-mode step of `impl` on fresh tensors.

    fwd runs under no_grad (the kernels alone); fwd_bwd differentiates with respect to
    x, weight and bias via autograd.grad, so no .grad accumulation adds kernels.
    """
    channels = case.shape[1]
    if impl == "fused":
        from fastgan.nn import BatchNormLeakyReLU2d

        module = BatchNormLeakyReLU2d(channels, negative_slope=SLOPE)
    elif impl == "inplace_abn":
        module = peer_module(impl, channels).to(DTYPES[case.dtype])
    elif impl == "abn":
        module = peer_module(impl, channels)
    else:
        module = nn.Sequential(nn.BatchNorm2d(channels), nn.LeakyReLU(SLOPE))
    module = module.to(device).train()
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = case.tensor(gen, device)
    params = tuple(module.parameters())
    if impl == "compiled":
        module = _compile(module)
    if pass_ == "fwd":
        def forward():
            with torch.no_grad():
                return module(x)
        return forward
    x.requires_grad_(True)
    grad_out = case.tensor(gen, device)
    inputs = (x, *params)
    if impl == "inplace_abn":
        def forward_backward_on_copy():
            return torch.autograd.grad(module(x.clone()), inputs, grad_out)
        return forward_backward_on_copy

    def forward_backward():
        return torch.autograd.grad(module(x), inputs, grad_out)
    return forward_backward


class EagerDLoss(nn.Module):
    """The usual discriminator loss: criterion(real, 1) + criterion(fake, 0), targets
    expanded from 0-dim buffers as pix2pix's GANLoss does (no fill kernel per call)."""

    def __init__(self, mode: str):
        super().__init__()
        self.criterion = {"vanilla": nn.BCEWithLogitsLoss(), "lsgan": nn.MSELoss()}[mode]
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return (self.criterion(real, self.real_label.expand_as(real))
                + self.criterion(fake, self.fake_label.expand_as(fake)))


def loss_step(impl: str, case: LossCase, pass_: str, device: str) -> Callable[[], object]:
    """A no-argument callable: discriminator loss of `impl` and its gradients w.r.t. both maps."""
    if pass_ != "fwd_bwd":
        raise ValueError(f"the loss benchmarks time fwd_bwd only, got {pass_!r}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    real = torch.randn(case.shape, generator=gen).to(device).requires_grad_(True)
    fake = torch.randn(case.shape, generator=gen).to(device).requires_grad_(True)
    if impl == "fused":
        from fastgan.nn import PatchGANLoss

        loss_fn = PatchGANLoss(mode=case.mode).discriminator
    else:
        loss_fn = EagerDLoss(case.mode).to(device)
        if impl == "compiled":
            loss_fn = _compile(loss_fn)

    def forward_backward():
        return torch.autograd.grad(loss_fn(real, fake), (real, fake))
    return forward_backward


def clone_step(case: BnCase, device: str) -> Callable[[], object]:
    """The clone of x that InPlaceABN's fwd+bwd step makes, alone (its cost is taken out of that row)."""
    return case.tensor(torch.Generator().manual_seed(0), device).clone


def error_reason(exc: BaseException) -> str:
    """An exception's type and first line, short enough for a table note (compile
    errors run to pages)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def make_step(impl: str, case, pass_: str, device: str) -> Callable[[], object]:
    builder = bn_step if case.op == "bn_act" else loss_step
    return builder(impl, case, pass_, device)
