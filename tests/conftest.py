"""Shared fixtures and helpers for fastgan's operator tests.

The backend under test is whatever `fastgan.ops` loads (FASTGAN_BACKEND=auto|aot|jit|
reference). Tests of the compiled operators themselves (opcheck, the autograd formulas,
raw torch.ops.fastgan errors) skip on the reference backend; everything else must pass
on every backend. Tests marked `slow` are deselected with `-m "not slow"`; tests marked
`cuda` skip without a GPU.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastgan") is None:  # not pip-installed: test the checkout
    sys.path.insert(0, str(ROOT))

import fastgan.ops as fops  # noqa: E402

BACKEND = fops.backend_info()["backend"]
COMPILED = BACKEND != "reference"
HAS_CUDA = torch.cuda.is_available()
# cuDNN's fp32 convolutions default to TF32 on Ampere and later (10 mantissa bits), which would
# blur every fp32 comparison of a model on the GPU; the tests hold fp32 to fp32.
torch.backends.cudnn.allow_tf32 = False

requires_compiled = pytest.mark.skipif(
    not COMPILED, reason=f"tests the compiled torch.ops.fastgan operators; backend is {BACKEND!r} "
                         f"({fops.backend_info()['reason']})")

_CUDA_MARKS = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")]
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=_CUDA_MARKS)]

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}

# (atol, rtol) per dtype. fp32 is the numerics contract (docs/operators.md);
# half types get a few ulps at the data's scale; fp64 is near exact.
_TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (2e-2, 2e-2),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return _TOLERANCES[dtype]


def assert_close(actual, expected, dtype=None, scale=None, factor: float = 1.0, msg: str = ""):
    """torch.testing.assert_close with fastgan's per-dtype tolerance.

    atol is taken relative to the data's scale (max |expected|, at least 1), so sums
    over many elements (weight gradients, losses) get the same relative slack as
    O(1) activations. `factor` loosens both bounds for derived quantities.
    """
    dtype = dtype or expected.dtype
    atol, rtol = _TOLERANCES[dtype]
    if scale is None:
        finite = expected[torch.isfinite(expected)] if expected.numel() else expected
        scale = float(finite.detach().abs().max().double()) if finite.numel() else 1.0
    scale = max(1.0, scale)
    torch.testing.assert_close(actual, expected, atol=atol * scale * factor, rtol=rtol * factor,
                               check_dtype=True, equal_nan=True, msg=(lambda m: f"{msg}\n{m}") if msg else None)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """cpu always; cuda (marked `cuda`) when a GPU is present, else skipped."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state, so failures reproduce."""
    torch.manual_seed(0)
    yield


def make_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x's values in a given memory layout: nchw, channels_last, or a non-contiguous permuted view."""
    if layout == "nchw":
        return x.contiguous()
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":
        # Stored as (N, W, H, C), viewed as (N, C, H, W): neither NCHW- nor NHWC-contiguous
        # unless the shape makes it degenerate.
        return x.permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)
    if layout == "strided":
        # Every other column of a wider tensor.
        wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]
    raise ValueError(layout)


LAYOUTS = ["nchw", "channels_last"]


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder in which no file can be created: a read-only folder of our own, or, for root (whom permission
    bits do not stop), the read-only sysfs of a container."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    sysfs = Path("/sys")
    try:
        with tempfile.TemporaryFile(dir=sysfs):
            pytest.skip("running as root with a writable /sys: no folder here refuses a new file")
    except OSError:
        yield sysfs
