"""Gradient penalties (loss.penalty wgan-gp | r1): the formulas, their use by every family, the
config checks and the trainer end to end."""
from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn

from fastgan import checkpoint
from fastgan.config import parse_config
from fastgan.data.collate import collate_skipping
from fastgan.families import Family, build_family
from fastgan.models import PatchDiscriminator
from fastgan.nn import BatchNormLeakyReLU2d, r1_penalty, wgan_gp_penalty
from fastgan.train import build_datasets, main

from conftest import assert_close
from reference_nets import randomize_bn_state
from train_helpers import TINY_PIX2PIX, final_weights, loss_trace, metric_records, tiny_dcgan, write_images

PENALTIES = {"wgan-gp": lambda critic, real, fake, **kw: wgan_gp_penalty(critic, real, fake, **kw),
             "r1": lambda critic, real, fake, **kw: r1_penalty(critic, real, **kw)}


# ----------------------------------------------------------------------------- analytic values

def linear_critic(w: torch.Tensor):
    """score_i = <x_i, w>: its input gradient is w for every sample and every x."""
    return lambda x: x.flatten(1) @ w


def test_linear_critic_gives_the_closed_forms_whatever_eps():
    torch.manual_seed(1)
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    w0 = torch.randn(18) * 0.7
    norm = w0.norm()
    for seed in range(3):  # eps changes with the seed; the penalty must not
        torch.manual_seed(seed)
        w = w0.clone().requires_grad_()
        value = wgan_gp_penalty(linear_critic(w), real, fake)
        torch.testing.assert_close(value, (norm - 1) ** 2)
        value.backward()
        torch.testing.assert_close(w.grad, 2 * (norm - 1) * w0 / norm)
    w = w0.clone().requires_grad_()
    value = r1_penalty(linear_critic(w), real)
    torch.testing.assert_close(value, 0.5 * norm ** 2)
    value.backward()
    torch.testing.assert_close(w.grad, w0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", PENALTIES)
def test_critics_of_other_dtypes_take_their_own_dtype(name, dtype):
    """A .double() or .bfloat16() critic: the interpolated samples must reach it in its dtype."""
    torch.manual_seed(3)
    critic = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4, 1)).to(dtype)
    real, fake = torch.randn(3, 2, 3, 3, dtype=dtype), torch.randn(3, 2, 3, 3, dtype=dtype)
    value = PENALTIES[name](critic, real, fake)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    if dtype == torch.float64:  # the same critic in fp32 gives the same value to fp32 precision
        torch.manual_seed(4)
        expected = PENALTIES[name](critic.float(), real.float(), fake.float())
        torch.manual_seed(4)
        torch.testing.assert_close(PENALTIES[name](critic.double(), real, fake), expected, rtol=1e-4, atol=1e-5)


def test_a_logit_map_is_one_score_per_sample_its_mean():
    """A PatchGAN-like N x 1 x 2 x 3 map of linear logits: the score is the map's mean, so the
    input gradient is the mean of the six weight columns (a sum would give six times that)."""
    torch.manual_seed(2)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    W = torch.randn(18, 6)
    g = W.mean(1)
    critic = lambda x: (x.flatten(1) @ W).reshape(x.shape[0], 1, 2, 3)  # noqa: E731
    torch.testing.assert_close(wgan_gp_penalty(critic, real, fake), (g.norm() - 1) ** 2)
    torch.testing.assert_close(r1_penalty(critic, real), 0.5 * g.norm() ** 2)
    # a single logit per sample, as N or N x 1, is the same thing
    w = torch.randn(18)
    for shape in [(-1,), (-1, 1)]:
        torch.testing.assert_close(r1_penalty(lambda x: (x.flatten(1) @ w).reshape(*shape), real),
                                   0.5 * w.norm() ** 2)


def test_every_sample_is_penalized_on_its_own_gradient():
    """score_i = tanh(<x_i, w>): per-sample norms |1 - tanh^2| * ||w|| differ, and the penalty is the
    mean over samples of their own terms (not the norm of the whole batch's gradient)."""
    torch.manual_seed(3)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    w = torch.randn(4)
    critic = lambda x: torch.tanh(x.flatten(1) @ w)  # noqa: E731
    slope = lambda x: (1 - torch.tanh(x.flatten(1) @ w) ** 2) * w.norm()  # noqa: E731
    torch.testing.assert_close(r1_penalty(critic, real), 0.5 * (slope(real) ** 2).mean())
    torch.manual_seed(4)
    eps = torch.rand(6, 1, 1, 1)
    between = fake + eps * (real - fake)
    torch.manual_seed(4)
    torch.testing.assert_close(wgan_gp_penalty(critic, real, fake), ((slope(between) - 1) ** 2).mean())


# ----------------------------------------------------------------------------- grad_scale

def small_critic() -> nn.Module:
    torch.manual_seed(5)
    # no bias before the norm (it would cancel, leaving a gradient of pure rounding noise)
    net = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1, bias=False), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
                        nn.Conv2d(8, 1, 3, 1, 1))
    return randomize_bn_state(net)


@pytest.mark.parametrize("penalty", list(PENALTIES))
@pytest.mark.parametrize("scale", [65536.0, 1000.0, 2.0 ** -10])
def test_grad_scale_leaves_the_penalty_and_its_gradients_unchanged(penalty, scale):
    torch.manual_seed(6)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    results = []
    for s in (1.0, scale):
        D = small_critic()
        torch.manual_seed(7)
        value = PENALTIES[penalty](D, real, fake, grad_scale=s)
        value.backward()
        results.append((value.detach(), {k: p.grad for k, p in D.named_parameters()}))
    (v1, g1), (v2, g2) = results
    torch.testing.assert_close(v2, v1, rtol=1e-5, atol=0)
    assert v1 > 0
    assert g1.keys() == g2.keys() and [k for k in g1 if g1[k] is None] == [k for k in g2 if g2[k] is None]
    for key in [k for k in g1 if g1[k] is not None]:
        assert g1[key].abs().sum() > 0 or key.endswith("bias"), key  # biases only move LeakyReLU's kink
        assert_close(g2[key], g1[key], msg=key)


def test_grad_scale_keeps_fp16_input_gradients_from_underflowing():
    """What grad_scale is for: a half-precision critic whose input gradient (~2.4e-8 per element) is
    below fp16's smallest subnormal. Unscaled it flushes to zero; scaled by 2^12 before the
    backward (and divided after) it survives and matches the fp32 value."""
    real = torch.randn(2, 1, 64, 64)
    critic = lambda x: (x.half() * 1e-4).flatten(1).mean(1)  # noqa: E731
    exact = 0.5 * 64 * 64 * (1e-4 / (64 * 64)) ** 2
    assert r1_penalty(critic, real).item() == 0.0
    torch.testing.assert_close(r1_penalty(critic, real, grad_scale=4096.0).item(), exact, rtol=2e-3, atol=0)
    torch.manual_seed(8)
    gp = wgan_gp_penalty(critic, real, torch.zeros_like(real), grad_scale=4096.0)
    torch.testing.assert_close(gp.item(), (1 - 1e-4 / 64) ** 2, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------- against a reference

def reference_penalty(kind: str, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The textbook double backward, written out with torch.autograd.grad."""
    n = real.shape[0]
    if kind == "wgan-gp":
        eps = torch.rand(n, 1, 1, 1, device=real.device)
        x = (fake + eps * (real - fake)).requires_grad_()
    else:
        x = real.clone().requires_grad_()
    score = D(x).reshape(n, -1).mean(1)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    norm = grad.reshape(n, -1).norm(dim=1)
    return ((norm - 1) ** 2).mean() if kind == "wgan-gp" else 0.5 * (norm ** 2).mean()


def penalty_and_grads(fn, D: nn.Module, seed: int = 11) -> tuple[torch.Tensor, dict, dict]:
    torch.manual_seed(seed)  # the same eps for both
    value = fn(D)
    value.backward()
    # the last layer's bias shifts the score, not its input gradient: no gradient reaches it
    return (value.detach(), {k: p.grad.clone() for k, p in D.named_parameters() if p.grad is not None},
            {k: v.clone() for k, v in D.state_dict().items()})


def assert_same(a, b, factor: float = 1.0):
    (va, ga, sa), (vb, gb, sb) = a, b
    assert_close(va, vb, factor=factor, msg="penalty")
    assert ga.keys() == gb.keys()
    for key in ga:
        assert_close(ga[key], gb[key], factor=factor, msg=f"grad {key}")
        assert ga[key].abs().sum() > 0 or key.endswith("bias"), f"{key} got no gradient"
    for key in sa:  # batch norm's running statistics moved the same way
        if sa[key].is_floating_point():
            assert_close(sa[key], sb[key], factor=factor, msg=key)


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_matches_a_hand_written_double_backward(kind):
    torch.manual_seed(9)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    D, D_ref = small_critic(), small_critic()
    got = penalty_and_grads(lambda m: PENALTIES[kind](m, real, fake), D)
    want = penalty_and_grads(lambda m: reference_penalty(kind, m, real, fake), D_ref)
    assert_same(got, want)


@pytest.mark.parametrize("kind", list(PENALTIES))
def test_fused_discriminator_matches_stock_layers(kind, device):
    """The fused BatchNorm+LeakyReLU operators' double backward gives the stock layers' penalty
    and parameter gradients (the same weights, loaded across the two)."""
    torch.manual_seed(10)
    stock = randomize_bn_state(PatchDiscriminator(in_ch=6, ndf=8, n_layers=2, fused=False)).to(device)
    fused = PatchDiscriminator(in_ch=6, ndf=8, n_layers=2, fused=True).to(device)
    fused.load_state_dict(stock.state_dict())
    assert any(isinstance(m, BatchNormLeakyReLU2d) for m in fused.modules())
    assert not any(isinstance(m, BatchNormLeakyReLU2d) for m in stock.modules())
    real, fake = torch.randn(4, 6, 32, 32, device=device), torch.randn(4, 6, 32, 32, device=device)
    reference = penalty_and_grads(lambda m: reference_penalty(kind, m, real, fake), copy.deepcopy(stock))
    got_stock = penalty_and_grads(lambda m: PENALTIES[kind](m, real, fake), stock)
    got_fused = penalty_and_grads(lambda m: PENALTIES[kind](m, real, fake), fused)
    assert got_stock[0] > 0
    assert_same(got_stock, reference)
    assert_same(got_fused, got_stock, factor=5)


# ----------------------------------------------------------------------------- errors

def test_bad_arguments_are_value_errors():
    real = torch.randn(4, 3, 8, 8)
    critic = linear_critic(torch.randn(192))
    with pytest.raises(ValueError, match=r"real and fake samples must have the same shape, got \(4, 3, 8, 8\) "
                                         r"and \(3, 3, 8, 8\)"):
        wgan_gp_penalty(critic, real, real[:3])
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="grad_scale must be > 0, got"):
            wgan_gp_penalty(critic, real, real, grad_scale=scale)
        with pytest.raises(ValueError, match="grad_scale must be > 0, got"):
            r1_penalty(critic, real, grad_scale=scale)
    message = r"the critic must return one score or logit map per sample: input batch 4, output shape "
    with pytest.raises(ValueError, match=message + r"\(\)"):
        r1_penalty(lambda x: x.sum(), real)
    with pytest.raises(ValueError, match=message + r"\(2, 2\)"):
        r1_penalty(lambda x: x.reshape(2, 2, -1).mean(2), real)
    with pytest.raises(ValueError, match=message + r"\(1, 4\)"):
        wgan_gp_penalty(lambda x: critic(x)[None], real, torch.zeros_like(real))


# ----------------------------------------------------------------------------- every family

SMALL = ["--model.ngf", "8", "--model.ndf", "8", "--train.batch_size", "4", "--loss.penalty_weight", "2.5"]


def family_args(family: str, root: Path) -> list[str]:
    if family == "pix2pix":
        return [*TINY_PIX2PIX, "--loss.penalty_weight", "2.5"]
    if family in ("dcgan", "conditional"):
        return [*tiny_dcgan(root / ("classes" if family == "conditional" else "flat"), family),
                "--loss.penalty_weight", "2.5"]
    if family == "srgan":
        return [*SMALL, "--model.family", "srgan", "--data.crop_size", "24", "--model.scale", "2",
                "--model.num_blocks", "1"]
    if family == "gancls":
        return [*SMALL, "--model.family", "gancls", "--data.crop_size", "32", "--data.load_size", "32",
                "--model.nz", "16", "--model.text_dim", "16", "--model.text_embed_dim", "8",
                "--model.caption_len", "64", "--model.gan_int", "true"]
    level = family[-1]
    return [*SMALL, "--model.family", "lapgan", "--data.dataset", "folder", "--data.root", str(root / "flat"),
            "--data.crop_size", "16", "--model.levels", "3", "--model.level", level, "--model.nz", "16"]


# What each family's discriminator judges, written out independently of Family.critic/real:
# (real samples, critic of images) from the batch and D.
EXPECTED = {
    "pix2pix": lambda D, b: (b["B"], lambda x: D(torch.cat([b["A"], x], 1))),
    "dcgan": lambda D, b: (b["image"], D),
    "conditional": lambda D, b: (b["image"], lambda x: D(x, b["label"])),
    "srgan": lambda D, b: (b["hr"], D),
    "gancls": lambda D, b: (b["image"], lambda x: D(x, b["tokens"])),
    "lapgan0": lambda D, b: (b["image"], D),
    "lapgan1": lambda D, b: (b["image"] - b["coarse"], lambda x: D(x, b["coarse"])),
}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_images(root / "flat", 8)
    write_images(root / "classes" / "cats", 4, seed=1)
    write_images(root / "classes" / "dogs", 4, seed=2)
    return root


@pytest.mark.parametrize("kind", list(PENALTIES))
@pytest.mark.parametrize("family", list(EXPECTED))
def test_every_family_penalizes_its_discriminator(image_root, family, kind):
    cfg = parse_config([*family_args(family, image_root), "--loss.penalty", kind])
    fam = build_family(cfg)
    train_set, _ = build_datasets(cfg)
    batch = collate_skipping([train_set[i] for i in range(4)])
    batch.pop("skipped")
    G, D = fam.models["G"], fam.models["D"]
    with torch.no_grad():
        fake = fam.generate(G, batch)
    if family == "gancls":
        assert fake.shape[0] == 8, "GAN-INT doubles the fakes"
    torch.manual_seed(12)
    weighted, logs = fam.penalty(D, batch, fake)
    assert set(logs) == {"loss_D_penalty"}
    value = logs["loss_D_penalty"]
    assert math.isfinite(value.item()) and value.item() > 0
    torch.testing.assert_close(weighted, 2.5 * value)
    weighted.backward()
    weights = {k: p.grad for k, p in D.named_parameters() if p.dim() > 1}
    assert weights and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
                           for g in weights.values()), "the penalty must reach every weight of D"
    assert all(p.grad is None for p in G.parameters()), "the penalty must not train G"
    # the same number from the public functions on what the family's D should judge
    real, critic = EXPECTED[family](D, batch)
    torch.manual_seed(12)
    expected = PENALTIES[kind](critic, real, fake[:4])
    torch.testing.assert_close(value, expected)


def test_lazy_penalty_is_weighted_by_its_interval(image_root):
    """loss.penalty_every N: the term the trainer adds on every Nth step is N x weight x penalty."""
    cfg = parse_config([*family_args("dcgan", image_root), "--loss.penalty", "r1", "--loss.penalty_every", "4"])
    fam = build_family(cfg)
    train_set, _ = build_datasets(cfg)
    batch = collate_skipping([train_set[i] for i in range(4)])
    with torch.no_grad():
        fake = fam.generate(fam.models["G"], batch)
    weighted, logs = fam.penalty(fam.models["D"], batch, fake)
    torch.testing.assert_close(weighted, 4 * 2.5 * logs["loss_D_penalty"])


def test_gan_int_penalty_pairs_the_reals_with_the_first_fakes(image_root):
    cfg = parse_config([*family_args("gancls", image_root), "--loss.penalty", "wgan-gp"])
    fam = build_family(cfg)
    train_set, _ = build_datasets(cfg)
    batch = collate_skipping([train_set[i] for i in range(4)])
    with torch.no_grad():
        fake = fam.generate(fam.models["G"], batch)
    values = []
    for part in (fake, fake[:4], fake[4:]):
        torch.manual_seed(13)
        values.append(fam.penalty(fam.models["D"], batch, part)[1]["loss_D_penalty"].detach())
    assert torch.equal(values[0], values[1])
    assert not torch.equal(values[0], values[2])


def test_penalty_under_bf16_autocast_is_close_to_fp32():
    cfg = parse_config([*TINY_PIX2PIX, "--loss.penalty", "r1"])
    fam = build_family(cfg)
    train_set, _ = build_datasets(cfg)
    batch = collate_skipping([train_set[i] for i in range(4)])
    with torch.no_grad():
        fake = fam.generate(fam.models["G"], batch)
    D = fam.models["D"]
    full = fam.penalty(D, batch, fake)[1]["loss_D_penalty"]
    bf16 = fam.penalty(D, batch, fake, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                       grad_scale=256.0)[1]["loss_D_penalty"]
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, full, rtol=0.1, atol=0)


# ----------------------------------------------------------------------------- config

def config_error(argv, capsys) -> str:
    """The trainer's exit for a bad config: status 2 and one error line naming the key."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--loss.penalty", "wgan-gp", "--loss.penalty_weight", "0"],
     "loss.penalty_weight must be > 0 with loss.penalty wgan-gp, got 0.0 (loss.penalty none switches it off)"),
    (["--loss.penalty", "r1", "--loss.penalty_weight", "-1"], "loss.penalty_weight must be > 0 with loss.penalty r1"),
    (["--loss.penalty", "r1", "--loss.lambda_adv", "0"],
     "loss.penalty r1 regularizes the discriminator, but loss.lambda_adv is 0, so the discriminator is not trained"),
    (["--loss.penalty", "wgan-gp", "--model.family", "srresnet", "--data.crop_size", "24", "--model.scale", "2"],
     "loss.penalty wgan-gp regularizes the discriminator, but model.family=srresnet trains no discriminator"),
    (["--loss.penalty", "r1", "--model.family", "srgan", "--data.crop_size", "24", "--model.scale", "2",
      "--loss.sr_lambda_adv", "0"],
     "loss.penalty r1 regularizes the discriminator, but loss.sr_lambda_adv is 0, so the discriminator is not "
     "trained"),
    (["--loss.penalty", "wgan"], "loss.penalty='wgan' is not one of none, wgan-gp, r1"),
    (["--loss.penalty", "r1", "--loss.penalty_every", "0"], "loss.penalty_every must be > 0, got 0"),
    (["--loss.penalty_every", "16"], "loss.penalty_every (16) spaces out a gradient penalty, but loss.penalty is none"),
    (["--model.d_norm", "none", "--model.family", "srresnet", "--data.crop_size", "24", "--model.scale", "2"],
     "model.d_norm=none would be ignored: srresnet trains no discriminator"),
    (["--model.d_norm", "instance", "--model.family", "lapgan", "--data.crop_size", "32"],
     "model.d_norm=instance would be ignored: lapgan level 0's MLPs have no norm"),
])
def test_penalty_config_errors(tmp_path, capsys, argv, message):
    line = config_error([*argv, "--train.out_dir", str(tmp_path / "run")], capsys)
    assert message in line
    assert not (tmp_path / "run").exists()


def test_penalty_weight_is_free_without_a_penalty():
    cfg = parse_config(["--loss.penalty_weight", "0"])
    assert (cfg.loss.penalty, cfg.loss.penalty_weight) == ("none", 0.0)
    assert parse_config([]).loss.penalty_weight == 10.0


# ----------------------------------------------------------------------------- training

def train(out_dir, *args) -> int:
    return main([*TINY_PIX2PIX, "--train.out_dir", str(out_dir), *args])


@pytest.mark.parametrize("args, lines, absent", [
    (["--loss.penalty", "wgan-gp", "--loss.gan_mode", "wgan"],
     ["fastgan: discriminator loss + 10 x wgan-gp gradient penalty",
      "fastgan: the critic has batch norm, which mixes the samples whose gradients WGAN-GP penalizes"],
     "without loss.penalty wgan-gp it has no Lipschitz constraint"),
    (["--loss.penalty", "r1", "--loss.penalty_weight", "0.5", "--loss.gan_mode", "wgan"],
     ["fastgan: discriminator loss + 0.5 x r1 gradient penalty",
      "fastgan: loss.gan_mode wgan is the Wasserstein critic loss; without loss.penalty wgan-gp it has no "
      "Lipschitz constraint"],
     "the critic has batch norm"),
], ids=["wgan-gp", "r1"])
def test_training_with_a_penalty_logs_it(tmp_path, capsys, args, lines, absent):
    # without dropout nothing else draws random numbers: only the penalty's gradient can set the runs apart
    assert train(tmp_path / "run", "--train.max_steps", "3", "--model.dropout", "false", *args) == 0
    out = capsys.readouterr().out
    for line in lines:
        assert line in out
    assert absent not in out
    penalty = loss_trace(tmp_path / "run", "loss_D_penalty")
    assert len(penalty) == 3 and all(math.isfinite(v) and v > 0 for v in penalty)
    assert len(set(penalty)) > 1
    assert metric_records(tmp_path / "run")[-1]["summary"] and "loss_D_penalty" in metric_records(tmp_path / "run")[-1]
    # the penalty trained D: the same run without it ends with other D parameters (not just other
    # batch-norm statistics, which the penalty's extra forward also moves)
    assert train(tmp_path / "plain", "--train.max_steps", "3", "--model.dropout", "false",
                 "--loss.gan_mode", "wgan") == 0
    assert not loss_trace(tmp_path / "plain", "loss_D_penalty")
    a, b = final_weights(tmp_path / "run"), final_weights(tmp_path / "plain")
    params = [k for k in a if k.startswith("D.") and k.endswith(("weight", "bias"))]
    assert params and not all(torch.equal(a[k], b[k]) for k in params)


def test_lazy_penalty_runs_on_every_nth_step(tmp_path, capsys, monkeypatch):
    calls = []
    original = Family.penalty
    monkeypatch.setattr(Family, "penalty", lambda self, *args: calls.append(1) or original(self, *args))
    assert train(tmp_path, "--train.max_steps", "5", "--loss.penalty", "r1", "--loss.penalty_every", "2") == 0
    assert ("fastgan: discriminator loss + 10 x r1 gradient penalty on one step in 2 (steps 0, 2, 4, ...), "
            "weighted x 2") in capsys.readouterr().out
    assert len(calls) == 3, "steps 0, 2, 4 (0-based) compute the penalty"
    penalty = loss_trace(tmp_path, "loss_D_penalty")
    assert len(penalty) == 5 and all(math.isfinite(v) and v > 0 for v in penalty)
    # a step without it logs the value of the newest step that computed it
    assert penalty[1] == penalty[0] and penalty[3] == penalty[2] and penalty[2] != penalty[0]
    assert len(set(loss_trace(tmp_path, "loss_D"))) == 5


def test_lazy_penalty_reaches_logs_of_steps_that_skip_it(tmp_path):
    """With log_every 4 and penalty_every 2 no logged step computes the penalty (the 4th, 8th steps are
    0-based 3, 7); the records still show the latest value, the summary too."""
    assert train(tmp_path, "--train.max_steps", "8", "--train.log_every", "4", "--loss.penalty", "r1",
                 "--loss.penalty_every", "2") == 0
    records = [r for r in metric_records(tmp_path) if "loss_D" in r]
    assert [r["step"] for r in records] == [4, 8, 8]
    assert all(math.isfinite(r["loss_D_penalty"]) and r["loss_D_penalty"] > 0 for r in records)


@pytest.mark.parametrize("args", [["--loss.penalty", "wgan-gp", "--loss.gan_mode", "wgan"],
                                  ["--loss.penalty", "r1", "--loss.penalty_every", "2"]], ids=["wgan-gp", "r1-every-2"])
def test_resume_with_a_penalty_is_bit_exact(tmp_path, args):
    """The penalty draws eps from the global RNG, which the checkpoint saves, and a lazy penalty
    keeps its phase across the resume (split at an odd step): N + resume + M == N + M."""
    assert train(tmp_path / "straight", *args, "--train.max_steps", "6") == 0
    assert train(tmp_path / "split", *args, "--train.max_steps", "3") == 0
    assert train(tmp_path / "split", *args, "--train.max_steps", "6", "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    def by_step(run):
        return {r["step"]: r["loss_D_penalty"] for r in metric_records(tmp_path / run)
                if "loss_D_penalty" in r and not r.get("summary")}
    # the checkpoint keeps the newest value of a lazy penalty: the resumed run logs it at once, as step 4 of an
    # unbroken run does
    assert by_step("split") == by_step("straight") and set(by_step("straight")) == set(range(1, 7))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_a_penalty(tmp_path, monkeypatch, precision):
    scales = []
    original = Family.penalty

    def recording(self, D, batch, fake, autocast=nullcontext, grad_scale=1.0):
        scales.append(grad_scale)
        return original(self, D, batch, fake, autocast, grad_scale)

    monkeypatch.setattr(Family, "penalty", recording)
    assert train(tmp_path, "--train.max_steps", "4", "--train.precision", precision, "--loss.penalty", "r1") == 0
    # the trainer passes the D GradScaler's scale (2^16 at first, halved per overflow) under fp16
    assert len(scales) == 4
    if precision == "fp16":
        assert scales[0] == 65536.0 and all(s >= 1 and math.log2(s).is_integer() for s in scales), scales
    else:
        assert scales == [1.0] * 4
    penalty = loss_trace(tmp_path, "loss_D_penalty")
    assert len(penalty) == 4
    # fp16 too: the scale reaches each score divided by the batch size, as in the scaled loss, so the
    # GradScaler's first 2^16 does not overflow the penalty's input gradient
    assert all(math.isfinite(v) and v > 0 for v in penalty), penalty
    state = checkpoint.load(tmp_path / "ckpt_00000004.pt")
    assert state["config"]["loss"]["penalty"] == "r1" and state["config"]["train"]["precision"] == precision
    assert all(torch.isfinite(v).all() for sd in state["models"].values() for v in sd.values()
               if v.is_floating_point())
    assert bool(state["scalers"]["D"]) == (precision == "fp16")


@pytest.mark.slow
def test_compiled_training_runs_with_a_penalty(tmp_path):
    assert train(tmp_path, "--train.max_steps", "2", "--train.compile", "true", "--loss.penalty", "wgan-gp") == 0
    penalty = loss_trace(tmp_path, "loss_D_penalty")
    assert len(penalty) == 2 and all(math.isfinite(v) and v > 0 for v in penalty)


# ----------------------------------------------------------------------------- n_critic

def adam_steps(state: dict, role: str) -> int:
    return int(next(iter(state["optimizers"][role]["state"].values()))["step"])


def test_n_critic_updates_the_generator_on_every_nth_batch(tmp_path, capsys):
    """optim.n_critic 3 over 7 batches: 7 discriminator updates, generator updates after the 3rd and 6th."""
    assert train(tmp_path, "--train.max_steps", "7", "--optim.n_critic", "3", "--loss.penalty", "wgan-gp",
                 "--loss.gan_mode", "wgan", "--optim.ema", "0.9") == 0
    assert ("fastgan: 3 discriminator updates per generator update, each on its own batch (steps count batches)"
            in capsys.readouterr().out)
    state = checkpoint.load(tmp_path / "ckpt_00000007.pt")
    assert (adam_steps(state, "D"), adam_steps(state, "G")) == (7, 2)
    assert int(state["ema"]["n_averaged"]) == 2, "the EMA follows the generator's updates"
    records = {r["step"]: r for r in metric_records(tmp_path) if "loss_D" in r and not r.get("summary")}
    assert sorted(records) == list(range(1, 8)) and len(set(r["loss_D"] for r in records.values())) == 7
    assert "loss_G" not in records[1] and "loss_G" not in records[2]
    assert records[3]["loss_G"] == records[4]["loss_G"] == records[5]["loss_G"] != records[6]["loss_G"]


def test_resume_with_n_critic_is_bit_exact(tmp_path):
    args = ["--optim.n_critic", "3", "--train.max_steps"]
    assert train(tmp_path / "straight", *args, "7") == 0
    assert train(tmp_path / "split", *args, "4") == 0
    assert train(tmp_path / "split", *args, "7", "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_n_critic_needs_a_trained_discriminator(tmp_path, capsys):
    line = config_error(["--optim.n_critic", "5", "--loss.lambda_adv", "0"], capsys)
    assert ("optim.n_critic (5) spaces out the generator's updates between discriminator updates, but "
            "loss.lambda_adv is 0, so the discriminator is not trained") in line
    assert "optim.n_critic must be > 0, got 0" in config_error(["--optim.n_critic", "0"], capsys)
