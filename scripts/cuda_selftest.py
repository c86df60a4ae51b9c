#!/usr/bin/env python3
"""GPU self-test of the fastgan CUDA kernels (throwaway check for a lent GPU machine).

Loads the operator library on its own: setup.py's in-place build (fastgan/_C*.so) when
there is one, else a JIT build of csrc/ into /tmp/fastgan_selftest. Every op's CUDA
result is compared with a float64 eager PyTorch composition of docs/operators.md, with
nn.BatchNorm2d + nn.LeakyReLU autograd, and with the CPU kernels when they loaded.
Prints a PASS/FAIL table (worst error per op, dtype and layout), then a short speed
table unless --no-bench; exits 1 on any failure.

Errors are normwise: max |ours - ref| / max |ref|. Elements whose pre-activation z lies
within rounding of 0 may legitimately take the other branch of the activation; they
are left out of elementwise comparisons and bound the allowed error of the sums.

Usage: python scripts/cuda_selftest.py [--lib PATH | --jit] [--no-bench]
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import site
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
sys.path.insert(0, str(ROOT))
from fastgan._build import LINK_FLAGS, NVCC_FLAGS, cxx_flags  # noqa: E402  (not fastgan.ops: it loads _C)
DEV = "cuda"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
# Normwise tolerance of outputs rounded to the element dtype, and of fp32/fp64 per-channel vectors.
OUT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
VEC_TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}
EPS = 1e-5


# ---- loading ----------------------------------------------------------------------------

def has_kernel(key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::bn_stats", key)


def load_library(lib: str | None, jit: bool) -> str:
    built = [lib] if lib else [] if jit else sorted(glob.glob(str(ROOT / "fastgan" / "_C*.so")))
    if built:
        torch.ops.load_library(built[0])
        if not has_kernel("CUDA"):
            sys.exit(f"{built[0]} has no CUDA kernels (rebuild with FASTGAN_CUDA=1, or delete it)")
        return built[0]
    from torch.utils import cpp_extension

    wheel_includes = [d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "cu*", "include"))]
    cpu = sorted(str(p) for p in (CSRC / "cpu").glob("*.cpp"))
    cuda = sorted(str(p) for p in (CSRC / "cuda").glob("*.cu"))
    attempts = [("fastgan_selftest", cpu), ("fastgan_selftest_cuda", [])]  # without CPU kernels if they break
    for name, cpu_sources in attempts:
        build = Path("/tmp") / name
        build.mkdir(exist_ok=True)
        try:
            t0 = time.time()
            path = cpp_extension.load(
                name=name, sources=[str(CSRC / "ops.cpp"), *cpu_sources, *cuda],
                extra_include_paths=[str(CSRC), *wheel_includes],
                extra_cflags=cxx_flags() + ["-DFASTGAN_WITH_CUDA=1"],
                extra_cuda_cflags=NVCC_FLAGS + ["-DFASTGAN_WITH_CUDA=1"],
                extra_ldflags=LINK_FLAGS, build_directory=str(build), is_python_module=False)
            print(f"built {path} in {time.time() - t0:.0f} s")
            return str(path)
        except Exception as error:  # report and retry without the CPU sources
            print(f"JIT build {name} failed: {str(error).strip().splitlines()[-1]}")
    sys.exit("no library could be built")


# ---- bookkeeping ------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.rows: dict[tuple, list] = {}
        self.failures: list[str] = []

    def add(self, op: str, dtype, layout: str, case: str, err: float, tol: float):
        key = (op, str(dtype).replace("torch.", ""), layout)
        ok = err <= tol
        row = self.rows.setdefault(key, [0, 0, -1.0, 0.0, tol, ""])
        row[0] += 1
        row[1] += 0 if ok else 1
        ratio = err / tol if tol > 0 else (0.0 if ok else math.inf)
        if ratio > row[2]:
            row[2:] = [ratio, err, tol, case]
        if not ok:
            self.failures.append(f"{op} {key[1]} {layout} {case}: err {err:.3g} > tol {tol:.3g}")

    def check(self, op: str, dtype, layout: str, case: str, passed: bool, what: str = ""):
        self.add(op, dtype, layout, case + (f" [{what}]" if what and not passed else ""), 0.0 if passed else math.inf, 0.0)

    def print(self) -> bool:
        print(f"\n{'op':<36}{'dtype':<10}{'layout':<8}{'cases':>6}{'fail':>6}{'max err':>11}{'tol':>10}  worst case")
        for (op, dt, lay), (n, nf, _, err, tol, case) in sorted(self.rows.items()):
            status = "PASS" if nf == 0 else "FAIL"
            print(f"{op:<36}{dt:<10}{lay:<8}{n:>6}{nf:>6}{err:>11.3g}{tol:>10.2g}  {status} {case}")
        for line in self.failures[:40]:
            print("FAIL", line)
        print(f"\n{len(self.rows)} rows, {sum(r[0] for r in self.rows.values())} checks, "
              f"{len(self.failures)} failures")
        return not self.failures


R = Report()


def norm_err(ours, ref, mask=None, bound=None, atol=0.0) -> float:
    """max(|ours - ref| - bound - atol) / max |ref|, over mask; inf on shape/NaN mismatch."""
    a, r = ours.detach().double(), ref.detach().double().to(ours.device)
    if a.shape != r.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    if not torch.equal(a.isnan(), r.isnan()):
        return math.inf
    a, r = a.nan_to_num(0.0), r.nan_to_num(0.0)
    diff = (a - r).abs()
    if bound is not None:
        diff = diff - bound
    diff = (diff - atol).clamp_min(0.0)
    if mask is not None:
        diff = diff[mask]
    scale = r.abs().max().item()
    return (diff.max().item() if diff.numel() else 0.0) / (scale if scale > 0 else 1.0)


def raises(fn) -> bool:
    try:
        fn()
    except RuntimeError:
        return True
    return False


# ---- BatchNorm + LeakyReLU --------------------------------------------------------------

def pc(v):
    return v.double().view(1, -1, 1, 1)


def sdtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def ref_stats(x):
    var, mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    return mean, var


def ref_z(x, mean, invstd, w, b):
    z = (x.double() - pc(mean)) * pc(invstd)
    if w is not None:
        z = z * pc(w)
    return z + pc(b) if b is not None else z


def ref_backward(g, saved, mean, invstd, w, b, slope, from_output, rel=None):
    """dz, xhat (float64) and the elements whose activation branch is ambiguous: |z| within
    rel times the magnitude of its terms (the kernels round z in float, or double)."""
    s, gd = saved.double(), g.double()
    wd = pc(w) if w is not None else 1.0
    bd = pc(b) if b is not None else 0.0
    if from_output:
        positive = s > 0
        z = torch.where(positive, s, s / slope)
        xhat = (z - bd) / wd
        ambiguous = torch.zeros_like(positive)
    else:
        xhat = (s - pc(mean)) * pc(invstd)
        z = xhat * wd + bd
        positive = z > 0
        if rel is None:
            rel = 1e-14 if saved.dtype == torch.float64 else 1e-6
        ambiguous = z.abs() <= rel * ((xhat * wd).abs() + abs(bd))
    dz = torch.where(positive, gd, gd * slope)
    return dz, xhat, ambiguous


def make(shape, dtype, layout, misaligned=False, scale=2.0, shift=0.5):
    """Random N(shift, scale^2) values in the given layout (NCHW, NHWC or strided)."""
    n = math.prod(shape)
    values = torch.randn(n, device=DEV, dtype=torch.float64) * scale + shift
    if misaligned:  # one element past an allocation's start: no aligned vector access
        x = torch.empty(n + 1, device=DEV, dtype=dtype)[1:].copy_(values)
    else:
        x = values.to(dtype)
    if layout == "NHWC":
        x = x.view(shape[0], shape[2], shape[3], shape[1]).permute(0, 3, 1, 2)
    elif layout == "strided":
        x = x.view(shape[0], shape[1], shape[3], shape[2]).transpose(2, 3)
    else:
        x = x.view(shape)
    return x


def check_bn_case(shape, dtype, layout, affine, slope, misaligned=False, grad_layout=None, cpu=False):
    sd = sdtype(dtype)
    tag = f"{tuple(shape)} {'affine' if affine else 'no-affine'} slope={slope}" + (" misaligned" if misaligned else "")
    x = make(shape, dtype, layout, misaligned)
    C = shape[1]
    w = b = None
    if affine:
        w = ((torch.rand(C, device=DEV, dtype=sd) + 0.5) * torch.sign(torch.randn(C, device=DEV, dtype=sd))).contiguous()
        b = torch.randn(C, device=DEV, dtype=sd) * 0.5
    ops = torch.ops.fastgan
    kl = layout  # the table's label; fmt: the layout the outputs must have
    channels_last = layout == "NHWC" and shape[1] > 1 and shape[2] * shape[3] > 1
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for where in [DEV] + (["cpu"] if cpu else []):
        dev = torch.device(where)
        mv = lambda t: None if t is None else t.to(dev)
        xx, ww, bb = x.to(dev), mv(w), mv(b)
        op = lambda name: name + ("" if where == DEV else "@cpu")
        rm, rv = ref_stats(x)
        mean, var = ops.bn_stats(xx)
        R.add(op("bn_stats.mean"), dtype, kl, tag, norm_err(mean.to(DEV), rm), VEC_TOL[dtype])
        R.add(op("bn_stats.var"), dtype, kl, tag, norm_err(var.to(DEV), rv), VEC_TOL[dtype])
        R.check(op("bn_stats.dtype"), dtype, kl, tag, mean.dtype == sd and var.dtype == sd)

        out, tm, tv = ops.bn_act_train(xx, ww, bb, EPS, slope, False)
        rinv = 1.0 / torch.sqrt(rv + EPS)
        rout = F.leaky_relu(ref_z(x, rm, rinv, w, b), slope)
        R.add(op("bn_act_train.out"), dtype, kl, tag, norm_err(out.to(DEV), rout), OUT_TOL[dtype])
        R.add(op("bn_act_train.stats"), dtype, kl, tag, max(norm_err(tm.to(DEV), rm), norm_err(tv.to(DEV), rv)), VEC_TOL[dtype])
        R.check(op("bn_act_train.layout"), dtype, kl, tag, out.dtype == dtype and out.is_contiguous(memory_format=fmt))

        sm, si = rm.to(sd), rinv.to(sd)
        ap = ops.bn_act_apply(xx, sm.to(dev), si.to(dev), ww, bb, slope, False)
        R.add(op("bn_act_apply"), dtype, kl, tag, norm_err(ap.to(DEV), F.leaky_relu(ref_z(x, sm, si, w, b), slope)), OUT_TOL[dtype])
        R.check(op("bn_act_apply.layout"), dtype, kl, tag, ap.dtype == dtype and ap.is_contiguous(memory_format=fmt))

        g = make(shape, dtype, grad_layout or layout, scale=1.0, shift=0.0)
        n = shape[0] * shape[2] * shape[3]
        for from_output in (False, True):
            saved = out.to(DEV) if from_output else x
            t2 = tag + (" from-output" if from_output else " from-input")
            if from_output and slope == 0:  # a ReLU output has lost xhat: both ops refuse it
                args = (g.to(dev), saved.to(dev), sm.to(dev), si.to(dev), ww, bb)
                R.check(op("bn_act_backward.relu_output_rejected"), dtype, kl, t2,
                        raises(lambda: ops.bn_act_backward_reduce(*args, slope, True))
                        and raises(lambda: ops.bn_act_backward_input(*args, sm.to(dev), si.to(dev), slope, True)))
                continue
            dz, xhat, amb = ref_backward(g, saved, sm, si, w, b, slope, from_output)
            rs_dz, rs_dzx = dz.sum(dim=(0, 2, 3)), (dz * xhat).sum(dim=(0, 2, 3))
            flip = g.double().abs() * abs(1.0 - slope) * amb  # what a flipped branch can change
            bound_dz, bound_dzx = flip.sum(dim=(0, 2, 3)), (flip * xhat.abs()).sum(dim=(0, 2, 3))
            s_dz, s_dzx = ops.bn_act_backward_reduce(g.to(dev), saved.to(dev), sm.to(dev), si.to(dev), ww, bb, slope, from_output)
            R.add(op("bn_act_backward_reduce.dz"), dtype, kl, t2, norm_err(s_dz.to(DEV), rs_dz, bound=bound_dz), VEC_TOL[dtype])
            R.add(op("bn_act_backward_reduce.dzx"), dtype, kl, t2, norm_err(s_dzx.to(DEV), rs_dzx, bound=bound_dzx), VEC_TOL[dtype])
            mdz, mdzx = (rs_dz / n).to(sd), (rs_dzx / n).to(sd)
            gi = ops.bn_act_backward_input(g.to(dev), saved.to(dev), sm.to(dev), si.to(dev), ww, bb,
                                           mdz.to(dev), mdzx.to(dev), slope, from_output)
            rgi = (dz - pc(mdz) - xhat * pc(mdzx)) * pc(si) * (pc(w) if w is not None else 1.0)
            R.add(op("bn_act_backward_input"), dtype, kl, t2, norm_err(gi.to(DEV), rgi, mask=~amb), OUT_TOL[dtype])
            R.check(op("bn_act_backward_input.layout"), dtype, kl, t2, gi.dtype == dtype and gi.is_contiguous(memory_format=fmt))


def check_module(shape, dtype, layout, slope):
    """Training forward + backward against nn.BatchNorm2d + nn.LeakyReLU autograd."""
    ops = torch.ops.fastgan
    C = shape[1]
    x = make(shape, dtype, layout)
    bn = torch.nn.BatchNorm2d(C, eps=EPS).to(DEV, dtype)
    with torch.no_grad():
        bn.weight.copy_((torch.rand(C) + 0.5) * torch.sign(torch.randn(C)))
        bn.bias.copy_(torch.randn(C) * 0.5)
    xr = x.clone().requires_grad_(True)
    y = F.leaky_relu(bn(xr), slope)
    g = make(shape, dtype, layout, scale=1.0, shift=0.0)
    y.backward(g)
    kl = layout
    tag = f"{tuple(shape)} slope={slope}"
    w, b = bn.weight.detach(), bn.bias.detach()
    out, mean, var = ops.bn_act_train(x, w, b, EPS, slope, False)
    R.add("module.forward", dtype, kl, tag, norm_err(out, y), OUT_TOL[dtype])
    invstd = torch.rsqrt(var + EPS)
    n = shape[0] * shape[2] * shape[3]
    for from_output in (False, True) if slope != 0 else (False,):  # ReLU outputs are refused
        saved = out if from_output else x
        t2 = tag + (" from-output" if from_output else " from-input")
        # cuDNN may round z differently from the kernels: a wider ambiguous band.
        _, xhat, amb = ref_backward(g, x, mean, invstd, w, b, slope, False, rel=1e-5 if dtype == torch.float32 else 1e-12)
        flip = g.double().abs() * abs(1.0 - slope) * amb
        s_dz, s_dzx = ops.bn_act_backward_reduce(g, saved, mean, invstd, w, b, slope, from_output)
        gi = ops.bn_act_backward_input(g, saved, mean, invstd, w, b, s_dz / n, s_dzx / n, slope, from_output)
        # From the output, xhat is recovered from rounded values: a little looser.
        tol = OUT_TOL[dtype] * (10 if from_output else 2)
        R.add("module.grad_bias", dtype, kl, t2, norm_err(s_dz, bn.bias.grad, bound=flip.sum(dim=(0, 2, 3))), tol)
        R.add("module.grad_weight", dtype, kl, t2,
              norm_err(s_dzx, bn.weight.grad, bound=(flip * xhat.abs()).sum(dim=(0, 2, 3))), tol)
        R.add("module.grad_input", dtype, kl, t2, norm_err(gi, xr.grad, mask=~amb), tol)


def check_bn_special():
    ops = torch.ops.fastgan
    # Large mean, small spread: one-pass statistics must not cancel.
    x = (torch.randn(8, 4, 64, 64, device=DEV, dtype=torch.float64) * 0.01 + 100).float()
    rm, rv = ref_stats(x)
    for layout in ("NCHW", "NHWC"):
        xx = x.contiguous(memory_format=torch.channels_last) if layout == "NHWC" else x
        mean, var = ops.bn_stats(xx)
        R.add("stats.mean100_std0.01.var", torch.float32, layout, "(8,4,64,64)", norm_err(var, rv), 1e-4)
        R.add("stats.mean100_std0.01.mean", torch.float32, layout, "(8,4,64,64)", norm_err(mean, rm), 1e-7)
    c = torch.full((4, 3, 5, 5), 3.25, device=DEV)
    mean, var = ops.bn_stats(c)
    R.check("stats.constant", torch.float32, "NCHW", "(4,3,5,5)", bool((var == 0).all() and (mean == 3.25).all()))
    # Empty inputs.
    for shape in ((0, 4, 5, 5), (2, 0, 3, 3)):
        e = torch.empty(shape, device=DEV)
        mean, var = ops.bn_stats(e)
        R.check("empty.bn_stats", torch.float32, "NCHW", str(shape), mean.shape == (shape[1],) and bool(var.isnan().all()))
        out, mean, var = ops.bn_act_train(e, None, None, EPS, 0.2, False)
        R.check("empty.bn_act_train", torch.float32, "NCHW", str(shape), out.shape == e.shape and bool(mean.isnan().all()))
        v = torch.ones(shape[1], device=DEV)
        R.check("empty.bn_act_apply", torch.float32, "NCHW", str(shape),
                ops.bn_act_apply(e, v, v, None, None, 0.2, False).shape == e.shape)
        s1, s2 = ops.bn_act_backward_reduce(e, e, v, v, None, None, 0.2, False)
        R.check("empty.bn_act_backward_reduce", torch.float32, "NCHW", str(shape), bool((s1 == 0).all() and (s2 == 0).all()))
        R.check("empty.bn_act_backward_input", torch.float32, "NCHW", str(shape),
                ops.bn_act_backward_input(e, e, v, v, None, None, v, v, 0.2, False).shape == e.shape)
    # Determinism: bitwise equal on a repeat.
    x = make((16, 64, 64, 64), torch.float32, "NCHW")
    g = make((16, 64, 64, 64), torch.float32, "NCHW")
    v = torch.ones(64, device=DEV)
    same = all(torch.equal(a, b) for a, b in zip(ops.bn_stats(x), ops.bn_stats(x)))
    same &= all(torch.equal(a, b) for a, b in zip(ops.bn_act_backward_reduce(g, x, v, v, None, None, 0.2, False),
                                                  ops.bn_act_backward_reduce(g, x, v, v, None, None, 0.2, False)))
    R.check("determinism.bn", torch.float32, "NCHW", "(16,64,64,64)", same)
    # Argument checks.
    v4 = torch.ones(4, device=DEV)
    x4 = torch.randn(2, 4, 3, 3, device=DEV)
    R.check("checks.bn", torch.float32, "-", "3-D input", raises(lambda: ops.bn_stats(x4[0])))
    R.check("checks.bn", torch.float32, "-", "stat dtype", raises(lambda: ops.bn_act_apply(x4, v4.double(), v4, None, None, 0.2, False)))
    R.check("checks.bn", torch.float32, "-", "vector on cpu", raises(lambda: ops.bn_act_apply(x4, v4.cpu(), v4, None, None, 0.2, False)))
    R.check("checks.bn", torch.float32, "-", "grad shape",
            raises(lambda: ops.bn_act_backward_reduce(x4[:1], x4, v4, v4, None, None, 0.2, False)))
    R.check("checks.bn", torch.float32, "-", "grad dtype",
            raises(lambda: ops.bn_act_backward_reduce(x4.half(), x4, v4, v4, None, None, 0.2, False)))


# ---- GAN losses -------------------------------------------------------------------------

def ref_term(x, mode, t, real):
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(x, torch.full_like(x, t))
    if mode == "lsgan":
        return F.mse_loss(x, torch.full_like(x, t))
    if mode == "hinge":
        return F.relu(1.0 - x).mean() if real else F.relu(1.0 + x).mean()
    return -x.mean() if real else x.mean()


def check_losses(cpu):
    ops = torch.ops.fastgan
    targets = {"vanilla": (0.9, 0.1), "lsgan": (1.0, 0.0), "hinge": (1.0, 0.0), "wgan": (1.0, 0.0)}
    shapes = [((4, 1, 30, 30), (4, 1, 30, 30)), ((3, 1), (5, 1, 7, 5)), ((1, 1, 1, 1), (1, 1, 1, 1)),
              ((64, 1, 62, 62), (64, 1, 62, 62)), ((2, 1, 9, 9), (2, 1, 9, 9), "misaligned"),
              ((2, 1, 8, 8), (2, 1, 8, 8), "strided")]
    for name, dtype in DTYPES.items():
        sd = sdtype(dtype)
        # fp16 gradients of a mean over many elements are subnormal: allow their spacing.
        atol = 6e-8 if dtype == torch.float16 else 0.0
        for spec in shapes:
            rs, fs = spec[0], spec[1]
            kind = spec[2] if len(spec) > 2 else ""

            def logits(shape):
                n = math.prod(shape)
                base = torch.randn(n + 1, device=DEV, dtype=torch.float64) * 3
                if kind == "misaligned":
                    return torch.empty(n + 1, device=DEV, dtype=dtype)[1:].copy_(base[1:]).view(shape)
                if kind == "strided":
                    return base[:n].to(dtype).view(shape).transpose(-1, -2)
                return base[:n].to(dtype).view(shape)

            real, fake = logits(rs), logits(fs)
            for mode, (tr, tf) in targets.items():
                tag = f"{rs}/{fs} {kind}".strip()
                rr = real.detach().double().clone().requires_grad_(True)
                rf = fake.detach().double().clone().requires_grad_(True)
                ref = ref_term(rr, mode, tr, True) + ref_term(rf, mode, tf, False)
                ref.backward()
                rg = fake.detach().double().clone().requires_grad_(True)
                gref = -rg.mean() if mode in ("hinge", "wgan") else ref_term(rg, mode, tr, True)
                gref.backward()
                for where in [DEV] + (["cpu"] if cpu else []):
                    sfx = "" if where == DEV else "@cpu"
                    loss, g_real, g_fake = ops.gan_d_loss(real.to(where), fake.to(where), mode, tr, tf)
                    R.add(f"gan_d_loss.{mode}{sfx}", dtype, "-", tag, norm_err(loss.to(DEV), ref), VEC_TOL[dtype])
                    R.add(f"gan_d_loss.grad.{mode}{sfx}", dtype, "-", tag,
                          max(norm_err(g_real.to(DEV), rr.grad, atol=atol), norm_err(g_fake.to(DEV), rf.grad, atol=atol)),
                          OUT_TOL[dtype])
                    R.check(f"gan_d_loss.meta{sfx}", dtype, "-", tag,
                            loss.dim() == 0 and loss.dtype == sd and g_real.dtype == dtype and g_real.shape == real.shape
                            and g_fake.shape == fake.shape and g_real.is_contiguous() and g_fake.is_contiguous())
                    gl, gg = ops.gan_g_loss(fake.to(where), mode, tr)
                    R.add(f"gan_g_loss.{mode}{sfx}", dtype, "-", tag, norm_err(gl.to(DEV), gref), VEC_TOL[dtype])
                    R.add(f"gan_g_loss.grad.{mode}{sfx}", dtype, "-", tag, norm_err(gg.to(DEV), rg.grad, atol=atol), OUT_TOL[dtype])
    big = torch.randn(64, 1, 62, 62, device=DEV)
    R.check("determinism.gan_d_loss", torch.float32, "-", "(64,1,62,62)",
            all(torch.equal(a, b) for a, b in zip(ops.gan_d_loss(big, big * 0.5, "vanilla", 1.0, 0.0),
                                                  ops.gan_d_loss(big, big * 0.5, "vanilla", 1.0, 0.0))))
    R.check("checks.gan", torch.float32, "-", "bad mode", raises(lambda: ops.gan_d_loss(big, big, "foo", 1.0, 0.0)))
    R.check("checks.gan", torch.float32, "-", "dtype mix", raises(lambda: ops.gan_d_loss(big, big.half(), "vanilla", 1.0, 0.0)))


# ---- speed ------------------------------------------------------------------------------

def timed(fn, iters=20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def bench():
    ops = torch.ops.fastgan
    print(f"\nspeed on {torch.cuda.get_device_name()} (ms per call; GB/s = bytes the pass must move / time)")
    print(f"{'shape':<20}{'dtype':<6}{'layout':<6}{'stats':>14}{'apply':>14}{'train':>14}{'bwd_reduce':>14}"
          f"{'bwd_input':>14}{'fused f+b':>11}{'eager f+b':>11}{'speedup':>9}")
    shape = (16, 64, 256, 256)
    C, n = shape[1], shape[0] * shape[2] * shape[3]
    for dname in ("fp32", "bf16"):
        dtype = DTYPES[dname]
        for layout in ("NCHW", "NHWC"):
            x = make(shape, dtype, layout)
            g = make(shape, dtype, layout, scale=1.0, shift=0.0)
            w, b = torch.ones(C, device=DEV), torch.zeros(C, device=DEV)
            mean, var = ops.bn_stats(x)
            inv = torch.rsqrt(var + EPS)
            out = ops.bn_act_apply(x, mean, inv, w, b, 0.2, False)
            s1, s2 = ops.bn_act_backward_reduce(g, out, mean, inv, w, b, 0.2, True)
            nbytes = x.numel() * x.element_size()
            cells = []
            for fn, moves in ((lambda: ops.bn_stats(x), 1),
                              (lambda: ops.bn_act_apply(x, mean, inv, w, b, 0.2, False), 2),
                              (lambda: ops.bn_act_train(x, w, b, EPS, 0.2, False), 3),
                              (lambda: ops.bn_act_backward_reduce(g, out, mean, inv, w, b, 0.2, True), 2),
                              (lambda: ops.bn_act_backward_input(g, out, mean, inv, w, b, s1, s2, 0.2, True), 3)):
                ms = timed(fn)
                cells.append(f"{ms:.3f}/{moves * nbytes / ms / 1e6:.0f}")

            def fused():
                o, m, v = ops.bn_act_train(x, w, b, EPS, 0.2, True)
                i = torch.rsqrt(v + EPS)
                a, c = ops.bn_act_backward_reduce(g, o, m, i, w, b, 0.2, True)
                return ops.bn_act_backward_input(g, o, m, i, w, b, a / n, c / n, 0.2, True)

            module = torch.nn.Sequential(torch.nn.BatchNorm2d(C), torch.nn.LeakyReLU(0.2)).to(DEV)
            xr = x.detach().clone().requires_grad_(True)

            def eager():
                module(xr).backward(g)

            tf, te = timed(fused), timed(eager)
            print(f"{str(shape):<20}{dname:<6}{layout:<6}" + "".join(f"{c:>14}" for c in cells)
                  + f"{tf:>11.3f}{te:>11.3f}{te / tf:>8.2f}x")
    real, fake = torch.randn(32, 1, 30, 30, device=DEV), torch.randn(32, 1, 30, 30, device=DEV)
    rr, rf = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    ones, zeros = torch.ones_like(real), torch.zeros_like(fake)

    def eager_loss():
        (F.binary_cross_entropy_with_logits(rr, ones) + F.binary_cross_entropy_with_logits(rf, zeros)).backward()

    def fused_loss():
        loss, gr, gf = ops.gan_d_loss(real, fake, "vanilla", 1.0, 0.0)
        return gr * 1.0, gf * 1.0  # autograd's backward: scale by the incoming gradient

    tf, te = timed(fused_loss, 100), timed(eager_loss, 100)
    print(f"gan_d_loss vanilla (32,1,30,30) fp32 fwd+bwd: fused {tf * 1e3:.1f} us, eager {te * 1e3:.1f} us, "
          f"speedup {te / tf:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", help="operator library to load instead of fastgan/_C*.so or a JIT build")
    parser.add_argument("--jit", action="store_true", help="JIT-build csrc/ even if fastgan/_C*.so exists")
    parser.add_argument("--no-bench", action="store_true", help="skip the speed table")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_selftest: no CUDA device")
    t0 = time.time()
    print("library:", load_library(args.lib, args.jit))
    cpu = has_kernel("CPU")
    print(f"CPU kernels {'loaded: cross-checking' if cpu else 'missing: CUDA only'}; "
          f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    torch.manual_seed(0)

    small = [(2, 1, 7, 5), (4, 3, 1, 1), (3, 5, 7, 5), (2, 8, 4, 4), (5, 24, 3, 3), (2, 6, 5, 5),
             (8, 3, 16, 16), (1, 512, 16, 16), (2, 16, 1, 9)]
    for dname, dtype in DTYPES.items():
        for layout in ("NCHW", "NHWC"):
            for shape in small:
                for affine in (True, False):
                    for slope in (0.0, 0.2):
                        check_bn_case(shape, dtype, layout, affine, slope, cpu=cpu and shape != (1, 512, 16, 16))
            check_bn_case((3, 8, 6, 6), dtype, layout, True, 0.2, misaligned=True, cpu=cpu)
            check_bn_case((3, 8, 6, 6), dtype, layout, True, 0.2, grad_layout="NHWC" if layout == "NCHW" else "NCHW")
            large = (16, 64, 128, 128)
            check_bn_case(large, dtype, layout, True, 0.2, cpu=cpu and dname == "fp32" and layout == "NCHW")
            check_bn_case(large, dtype, layout, False, 0.0)
        check_bn_case((3, 8, 6, 6), dtype, "strided", True, 0.2)
    print(f"BatchNorm op checks done ({time.time() - t0:.0f} s)")
    for dtype in (torch.float32, torch.float64):
        for layout in ("NCHW", "NHWC"):
            for shape in ((8, 16, 12, 12), (16, 64, 64, 64), (1, 512, 16, 16)):
                for slope in (0.0, 0.2):
                    check_module(shape, dtype, layout, slope)
    check_bn_special()
    check_losses(cpu)
    print(f"all checks done ({time.time() - t0:.0f} s)")
    ok = R.print()
    if not args.no_bench:
        try:
            bench()
        except Exception as error:  # speed is informative only
            print(f"bench failed: {type(error).__name__}: {error}")
    print(f"\ncuda_selftest: {'PASS' if ok else 'FAIL'} ({time.time() - t0:.0f} s)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
