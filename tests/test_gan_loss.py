"""PatchGANLoss / gan_d_loss / gan_g_loss against the eager PyTorch compositions.

The fused losses compute the loss and its gradient in one pass; these tests hold both
to BCEWithLogitsLoss / MSELoss / relu-hinge / mean computed by eager autograd.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import fastgan.ops as fops
from fastgan.nn import PatchGANLoss

from conftest import DTYPE_IDS, FLOAT_DTYPES, assert_close

MODES = ["vanilla", "lsgan", "hinge", "wgan"]
SHAPES = [(4, 1, 30, 30), (2, 1, 62, 62), (8, 1), (3, 1, 7, 5), (1, 1, 1, 1), (5,), ()]
SHAPE_IDS = ["30x30", "62x62", "Nx1", "odd", "single", "1d", "0d"]


def eager_d_loss(real, fake, mode, target_real=1.0, target_fake=0.0):
    if mode == "vanilla":
        return (F.binary_cross_entropy_with_logits(real, torch.full_like(real, target_real))
                + F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, target_fake)))
    if mode == "lsgan":
        return F.mse_loss(real, torch.full_like(real, target_real)) + F.mse_loss(fake, torch.full_like(fake, target_fake))
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()


def eager_g_loss(fake, mode, target_real=1.0):
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, target_real))
    if mode == "lsgan":
        return F.mse_loss(fake, torch.full_like(fake, target_real))
    return -fake.mean()


def oracle(dtype):
    """The eager composition in fp64 on the same (exactly upcast) logits: eager fp32 BCE loses
    digits for large |logit| with smoothed targets, the fused loss (log1p form) must not."""
    return torch.float64


def logits(shape, dtype, device, scale=2.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(device=device, dtype=dtype)


def check_d(real, fake, mode, target_real=1.0, target_fake=0.0, upstream=1.7):
    """Fused discriminator loss and gradients vs eager autograd (with a non-unit upstream grad)."""
    dtype = real.dtype
    loss_fn = PatchGANLoss(mode, target_real, target_fake)
    r, f = real.detach().clone().requires_grad_(), fake.detach().clone().requires_grad_()
    loss = loss_fn.discriminator(r, f)
    assert loss.dim() == 0 and loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    (loss * upstream).backward()
    rr = real.detach().to(oracle(dtype)).requires_grad_()
    ff = fake.detach().to(oracle(dtype)).requires_grad_()
    ref = eager_d_loss(rr, ff, mode, target_real, target_fake)
    (ref * upstream).backward()
    # The loss is computed in fp32/fp64 from exact inputs: held to the fp32/fp64 contract.
    assert_close(loss, ref.to(loss.dtype), loss.dtype, msg="loss")
    assert r.grad.dtype == dtype and r.grad.shape == real.shape and f.grad.shape == fake.shape
    assert_close(r.grad.to(rr.dtype), rr.grad, dtype, msg="grad real")
    assert_close(f.grad.to(ff.dtype), ff.grad, dtype, msg="grad fake")


def check_g(fake, mode, target_real=1.0, upstream=0.6):
    dtype = fake.dtype
    f = fake.detach().clone().requires_grad_()
    loss = PatchGANLoss(mode, target_generator=target_real).generator(f)
    assert loss.dim() == 0 and loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    (loss * upstream).backward()
    ff = fake.detach().to(oracle(dtype)).requires_grad_()
    ref = eager_g_loss(ff, mode, target_real)
    (ref * upstream).backward()
    assert_close(loss, ref.to(loss.dtype), loss.dtype, msg="loss")
    assert f.grad.dtype == dtype and f.grad.shape == fake.shape
    assert_close(f.grad.to(ff.dtype), ff.grad, dtype, msg="grad fake")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("mode", MODES)
def test_losses_match_eager(device, mode, shape, dtype):
    """Discriminator and generator loss values and gradients for every mode, shape and dtype."""
    real, fake = logits(shape, dtype, device) + 0.5, logits(shape, dtype, device) - 0.5
    check_d(real, fake, mode)
    check_g(fake, mode)


@pytest.mark.parametrize("targets", [(0.9, 0.1), (0.8, 0.0), (1.0, 0.2)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_label_smoothing_targets(device, mode, dtype, targets):
    """target_real / target_fake (label smoothing) for vanilla and lsgan."""
    target_real, target_fake = targets
    real, fake = logits((4, 1, 30, 30), dtype, device), logits((4, 1, 30, 30), dtype, device)
    check_d(real, fake, mode, target_real, target_fake)
    check_g(fake, mode, target_real)


@pytest.mark.parametrize("mode", MODES)
def test_real_and_fake_of_different_sizes(device, mode):
    """n_r and n_f are separate means (e.g. a replay buffer of fakes of another batch size)."""
    check_d(logits((4, 1, 14, 14), torch.float32, device), logits((2, 1, 14, 14), torch.float32, device), mode)


@pytest.mark.parametrize("mode", MODES)
def test_non_contiguous_logits(device, mode):
    """Transposed / strided logit maps give the same loss and gradients."""
    real = logits((4, 1, 16, 18), torch.float32, device).transpose(2, 3)
    fake = logits((4, 1, 16, 36), torch.float32, device)[..., ::2]
    assert not real.is_contiguous() and not fake.is_contiguous()
    check_d(real, fake, mode)
    check_g(fake, mode)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("magnitude", [100.0, 1e4])
def test_vanilla_extreme_logits_stay_finite(device, magnitude, dtype):
    """Stable BCE: +-100 and +-1e4 logits give finite losses and gradients equal to eager's."""
    values = torch.tensor([magnitude, -magnitude, 0.0, 3.0, -magnitude, magnitude], dtype=dtype, device=device)
    real, fake = values.view(2, 1, 3, 1), values.flip(0).view(2, 1, 3, 1)
    for targets in [(1.0, 0.0), (0.9, 0.1)]:
        loss = fops.gan_d_loss(real, fake, "vanilla", *targets)
        g_loss = fops.gan_g_loss(fake, "vanilla", targets[0])
        assert torch.isfinite(loss) and torch.isfinite(g_loss)
        check_d(real, fake, "vanilla", *targets)
        check_g(fake, "vanilla", targets[0])
    # A confidently right discriminator has (almost) zero loss, a confidently wrong one a huge one.
    right = fops.gan_d_loss(torch.full((4,), magnitude, device=device, dtype=dtype),
                            torch.full((4,), -magnitude, device=device, dtype=dtype), "vanilla")
    wrong = fops.gan_d_loss(torch.full((4,), -magnitude, device=device, dtype=dtype),
                            torch.full((4,), magnitude, device=device, dtype=dtype), "vanilla")
    assert 0 <= right.item() < 1e-30
    representable = torch.tensor(magnitude, dtype=dtype).item()  # bf16 holds 1e4 as 9984
    assert wrong.item() == pytest.approx(2 * representable, rel=1e-6)


@pytest.mark.parametrize("target", [1e-3, 1e-5])
def test_vanilla_loss_with_a_small_soft_target_keeps_its_digits(device, target):
    """BCE at x << 0 with target t is -x t: written as (1 - t) x + max(-x, 0) it cancels and keeps
    only about 1e-7 / t of relative accuracy (eager fp32 does so too)."""
    fake = torch.full((2, 1, 4, 4), -1e4, device=device)
    loss = fops.gan_g_loss(fake, "vanilla", target)
    expected = F.binary_cross_entropy_with_logits(fake.double(), torch.full_like(fake.double(), target))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_nan_logits_propagate(device, mode):
    """A NaN logit makes the loss NaN (no max(0, NaN) -> 0 swallowing it)."""
    real = logits((2, 1, 4, 4), torch.float32, device)
    fake = logits((2, 1, 4, 4), torch.float32, device)
    bad_real, bad_fake = real.clone(), fake.clone()
    bad_real[1, 0, 2, 3] = math.nan
    bad_fake[0, 0, 1, 1] = math.nan
    loss_fn = PatchGANLoss(mode)
    assert torch.isnan(loss_fn.discriminator(bad_real, fake))
    assert torch.isnan(loss_fn.discriminator(real, bad_fake))
    assert torch.isnan(loss_fn.generator(bad_fake))
    assert torch.isfinite(loss_fn.discriminator(real, fake))


def test_hinge_kink_matches_eager_autograd(device):
    """At the hinge's kinks (real logit exactly 1, fake exactly -1) the gradient is 0, as relu's."""
    real = torch.tensor([1.0, 0.999, 1.001, -2.0, 1.0, 3.0], device=device).view(6, 1)
    fake = torch.tensor([-1.0, -0.999, -1.001, 2.0, -1.0, -3.0], device=device).view(6, 1)
    check_d(real, fake, "hinge")
    r = real.clone().requires_grad_()
    f = fake.clone().requires_grad_()
    fops.gan_d_loss(r, f, "hinge").backward()
    torch.testing.assert_close(r.grad.flatten(), torch.tensor([0, -1, 0, -1, 0, 0.], device=device) / 6)
    torch.testing.assert_close(f.grad.flatten(), torch.tensor([0, 1, 0, 1, 0, 0.], device=device) / 6)


@pytest.mark.parametrize("mode", MODES)
def test_documented_values(mode):
    """Hand-computed losses from docs/operators.md's table on a tiny input."""
    r = torch.tensor([[2.0], [-1.0]])
    f = torch.tensor([[0.5], [-3.0]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731  softplus
    expected_d = {
        "vanilla": (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2,
        "lsgan": ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + (0.5 ** 2 + 3.0 ** 2) / 2,
        "hinge": (0 + 2.0) / 2 + (1.5 + 0) / 2,
        "wgan": (0.5 - 3.0) / 2 - (2.0 - 1.0) / 2,
    }[mode]
    expected_g = {"vanilla": (sp(-0.5) + sp(3.0)) / 2, "lsgan": (0.5 ** 2 + 4.0 ** 2) / 2,
                  "hinge": 1.25, "wgan": 1.25}[mode]
    assert fops.gan_d_loss(r, f, mode).item() == pytest.approx(expected_d, rel=1e-6)
    assert fops.gan_g_loss(f, mode).item() == pytest.approx(expected_g, rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode):
    """Double-precision gradcheck and gradgradcheck (gradient penalties differentiate the
    gradient again) of both losses, targets smoothed where they apply."""
    targets = (0.9, 0.1) if mode in ("vanilla", "lsgan") else (1.0, 0.0)
    real = (torch.randn(2, 1, 3, 3, dtype=torch.float64) * 2).requires_grad_()
    fake = (torch.randn(3, 1, 2, 2, dtype=torch.float64) * 2).requires_grad_()
    if mode == "hinge":  # keep finite differences off the kinks
        with torch.no_grad():
            real[(real - 1).abs() < 1e-3] += 0.1
            fake[(fake + 1).abs() < 1e-3] += 0.1
    for check in (torch.autograd.gradcheck, torch.autograd.gradgradcheck):
        assert check(lambda r, f: fops.gan_d_loss(r, f, mode, *targets), (real, fake))
        assert check(lambda f: fops.gan_g_loss(f, mode, targets[0]), (fake,))


def test_loss_without_grad():
    """No input requires grad: the loss is still computed (inference / logging)."""
    real, fake = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    with torch.no_grad():
        loss = fops.gan_d_loss(real, fake, "lsgan")
    assert not loss.requires_grad
    assert_close(loss, eager_d_loss(real, fake, "lsgan"))


def test_grad_only_to_fake():
    """Real logits that need no gradient (detached) while fakes do: only fake gets a grad."""
    real = torch.randn(2, 1, 5, 5)
    fake = torch.randn(2, 1, 5, 5, requires_grad=True)
    fops.gan_d_loss(real, fake, "vanilla").backward()
    ff = fake.detach().clone().requires_grad_()
    eager_d_loss(real, ff, "vanilla").backward()
    assert_close(fake.grad, ff.grad)


def test_repr_and_attributes():
    """PatchGANLoss keeps its configuration (used in logs and configs)."""
    loss = PatchGANLoss("lsgan", 0.9, 0.1)
    assert (loss.mode, loss.target_real, loss.target_fake, loss.target_generator) == ("lsgan", 0.9, 0.1, 1.0)
    assert "lsgan" in repr(loss) and "0.9" in repr(loss) and "target_generator=1.0" in repr(loss)


@pytest.mark.parametrize("mode, logit", [("vanilla", 2.944), ("lsgan", 0.95)])  # D rates the fake 0.95
def test_smoothing_the_real_label_leaves_the_generators_target_at_1(mode, logit):
    """One-sided label smoothing softens D's real target only: with target_real 0.9 the generator's
    loss is still its loss against 1, which keeps pushing a fake D rates 0.95 towards real."""
    fake = torch.tensor([[logit]], dtype=torch.float64, requires_grad=True)
    loss = PatchGANLoss(mode, target_real=0.9).generator(fake)
    torch.testing.assert_close(loss, eager_g_loss(fake.detach(), mode, 1.0))
    loss.backward()
    assert fake.grad.item() < 0, "a gradient step would make the fake look less real"
