"""torch.library.opcheck on every torch.ops.fastgan operator.

opcheck checks the schema (no undeclared mutation or aliasing), the register_fake
functions (shapes, dtypes and strides equal the real kernel's — what torch.compile
relies on), the autograd registration and AOT dispatch with dynamic shapes.
"""
from __future__ import annotations

import pytest
import torch

import fastgan.ops as fops
from conftest import COMPILED, DEVICES, requires_compiled

pytestmark = requires_compiled

OPS = ["bn_stats", "bn_act_apply", "bn_act_train", "bn_act_backward_reduce", "bn_act_backward_input",
       "gan_d_loss", "gan_g_loss"]


def _x(layout, dtype, device, shape=(2, 3, 4, 5), requires_grad=False):
    x = torch.randn(shape, dtype=dtype, device=device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "permuted":
        x = x.permute(0, 1, 3, 2)
    return x.requires_grad_(requires_grad)


def _vec(c, dtype, device, low=0.5, requires_grad=False, sign=False):
    v = low + torch.rand(c, dtype=dtype, device=device)
    if sign:
        v = v * torch.tensor([1.0, -1.0, 1.0], dtype=dtype, device=device)[:c]
    return v.requires_grad_(requires_grad)


BN_TAGS = [("nchw", torch.float32), ("channels_last", torch.float32), ("permuted", torch.float32),
           ("nchw", torch.bfloat16), ("channels_last", torch.bfloat16), ("channels_last", torch.float16),
           ("nchw", torch.float64)]
FULL = [(affine, save, grad) for affine in (True, False) for save in (False, True) for grad in (False, True)]
SOME = [(True, False, True), (False, True, False), (True, True, False)]


def bn_samples(device):
    """(id, op name, args) for the five BatchNorm ops."""
    out = []
    for layout, dtype in BN_TAGS:
        stat = torch.float64 if dtype == torch.float64 else torch.float32
        tag = f"{layout}-{str(dtype).split('.')[-1]}"
        out.append((f"bn_stats-{tag}", "bn_stats", (_x(layout, dtype, device),)))
        full = dtype == torch.float32 and layout != "permuted"
        for affine, save, grad in FULL if full else SOME:
            w = _vec(3, stat, device, requires_grad=grad, sign=True) if affine else None
            b = (torch.randn(3, dtype=stat, device=device) * 0.3).requires_grad_(grad) if affine else None
            slope = 0.2
            t = f"{tag}-{'affine' if affine else 'noaffine'}-{'save_out' if save else 'save_in'}-" \
                f"{'grad' if grad else 'nograd'}"
            out.append((f"bn_act_train-{t}", "bn_act_train",
                        (_x(layout, dtype, device, requires_grad=grad), w, b, 1e-5, slope, save)))
            mean = torch.randn(3, dtype=stat, device=device).requires_grad_(grad)
            invstd = _vec(3, stat, device, requires_grad=grad)
            out.append((f"bn_act_apply-{t}", "bn_act_apply",
                        (_x(layout, dtype, device, requires_grad=grad), mean, invstd, w, b, slope, save)))
            if grad:
                continue
            x = _x(layout, dtype, device)
            mean0, invstd0 = torch.randn(3, dtype=stat, device=device), _vec(3, stat, device)
            saved = x
            if save:  # the backward ops get the forward's output when saved_is_output
                saved = torch.ops.fastgan.bn_act_apply(x, mean0, invstd0, w, b, slope, True)
            g = _x(layout, dtype, device)
            out.append((f"bn_act_backward_reduce-{t}", "bn_act_backward_reduce",
                        (g, saved, mean0, invstd0, w, b, slope, save)))
            out.append((f"bn_act_backward_input-{t}", "bn_act_backward_input",
                        (g, saved, mean0, invstd0, w, b, torch.randn(3, dtype=stat, device=device),
                         torch.randn(3, dtype=stat, device=device), slope, save)))
    # grad_out in another layout than saved: the kernels bring it to saved's layout.
    x = _x("channels_last", torch.float32, device)
    args = (_x("nchw", torch.float32, device), x, torch.zeros(3, device=device), torch.ones(3, device=device),
            None, None, 0.1, False)
    out.append(("bn_act_backward_reduce-mixed-layouts", "bn_act_backward_reduce", args))
    out.append(("bn_act_backward_input-mixed-layouts", "bn_act_backward_input",
                args[:6] + (torch.randn(3, device=device), torch.randn(3, device=device)) + args[6:]))
    return out


def loss_samples(device):
    out = []
    for mode in ("vanilla", "lsgan", "hinge", "wgan"):
        targets = (0.9, 0.1) if mode in ("vanilla", "lsgan") else (1.0, 0.0)
        for shape, dtype, grads in (((2, 1, 30, 30), torch.float32, (False, True)), ((3, 1), torch.bfloat16, (True,)),
                                    ((2, 1, 5, 7), torch.float64, (True,))):
            for grad in grads:
                tag = f"{mode}-{'x'.join(map(str, shape))}-{str(dtype).split('.')[-1]}-{'grad' if grad else 'nograd'}"
                real = torch.randn(shape, dtype=dtype, device=device).requires_grad_(grad)
                fake = torch.randn(shape, dtype=dtype, device=device).requires_grad_(grad)
                out.append((f"gan_d_loss-{tag}", "gan_d_loss", (real, fake, mode, *targets)))
                out.append((f"gan_g_loss-{tag}", "gan_g_loss", (fake, mode, targets[0])))
        # Non-contiguous logits.
        real = torch.randn(2, 1, 6, 4, device=device).transpose(2, 3).requires_grad_()
        out.append((f"gan_d_loss-{mode}-transposed", "gan_d_loss", (real, real.detach() * 0.5, mode, *targets)))
    return out


def _samples():
    params = []
    for dev in DEVICES:
        device = dev.values[0]
        if not COMPILED or device == "cuda" and not torch.cuda.is_available():
            params.append(pytest.param(device, "none", None, marks=dev.marks, id=f"{device}-unavailable"))
            continue
        if device == "cuda" and not fops.backend_info()["cuda"]:
            params.append(pytest.param(device, "none", None, id=f"{device}-no-kernels", marks=[
                *dev.marks, pytest.mark.skip(reason="the compiled library was built without CUDA kernels")]))
            continue
        for sample_id, op, args in bn_samples(device) + loss_samples(device):
            params.append(pytest.param(device, op, args, marks=dev.marks, id=f"{device}-{sample_id}"))
    return params


@pytest.mark.parametrize("device,op,args", _samples())
def test_opcheck(device, op, args):
    """Schema, fake tensor, autograd registration and AOT dispatch checks for one sample."""
    torch.library.opcheck(getattr(torch.ops.fastgan, op).default, args)


def test_every_op_is_sampled():
    """Every op in the fastgan namespace is opchecked (a new op must add samples here)."""
    sampled = {op for _, op, _ in bn_samples("cpu") + loss_samples("cpu")}
    declared = {name for name in dir(torch.ops.fastgan) if isinstance(getattr(torch.ops.fastgan, name),
                                                                      torch._ops.OpOverloadPacket)}
    assert declared == set(OPS) == sampled


@pytest.mark.parametrize("op", OPS)
def test_cpu_kernel_registered(op):
    """Each op has a real CPU kernel (not only a fake), and CUDA ones when the backend says so."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{op}", "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan::{op}", "CUDA") == fops.backend_info()["cuda"]
