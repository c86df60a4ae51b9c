"""Bad input gets a clear error naming the problem — never a segfault, a kernel assert or
silently wrong numbers; odd-but-valid input (strided views, NaNs, empty eval batches) just works."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import fastgan.ops as fops
from fastgan.nn import BatchNormLeakyReLU2d, PatchGANLoss

from conftest import ROOT, assert_close, requires_compiled

OTHER_DEVICE = "cuda" if torch.cuda.is_available() else "meta"


def eager_pair(channels, slope=0.2):
    return nn.Sequential(nn.BatchNorm2d(channels), nn.LeakyReLU(slope))


# ---------------------------------------------------------------- module / public functions


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 4, 4), (3,)], ids=["3d", "5d", "1d"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_wrong_rank(shape, train):
    """Only 4-D (N, C, H, W) input; the message gives the rank received."""
    m = BatchNormLeakyReLU2d(3).train(train)
    with pytest.raises(ValueError, match=rf"expected 4D input \(got {len(shape)}D input\)"):
        m(torch.randn(shape))
    with pytest.raises(ValueError, match=rf"expected 4D input.*got {len(shape)}D"):
        fops.bn_stats(torch.randn(shape))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_channel_mismatch(train):
    """A channel count other than num_features names both numbers."""
    m = BatchNormLeakyReLU2d(3).train(train)
    with pytest.raises(ValueError, match=r"BatchNormLeakyReLU2d\(3\) got an input with 5 channels"):
        m(torch.randn(2, 5, 4, 4))


def test_channel_vector_mismatch():
    """Public functions check per-channel vectors' shapes against the input."""
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        fops.bn_act_train(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"invstd must have shape \(3,\)"):
        fops.bn_act_apply(x, torch.zeros(3), torch.ones(3, 1))


def test_bn_act_eval_checks_its_input_first():
    stats = torch.ones(3)
    with pytest.raises(ValueError, match=r"expected 4D input \(N, C, H, W\), got 1D input of shape \(3,\)"):
        fops.bn_act_eval(torch.randn(3), stats, stats)
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        fops.bn_act_eval([1.0, 2.0], stats, stats)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_input(dtype):
    """Integer/bool input is rejected naming the dtype."""
    x = torch.ones(2, 3, 4, 4, dtype=dtype)
    with pytest.raises(TypeError, match=rf"floating-point.*{dtype}"):
        BatchNormLeakyReLU2d(3)(x)
    with pytest.raises(TypeError, match="floating-point"):
        BatchNormLeakyReLU2d(3).eval()(x)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        BatchNormLeakyReLU2d(3)([[1.0]])


def test_single_value_per_channel_in_training():
    """The same message as nn.BatchNorm2d; eval mode is fine with one value."""
    shape = (1, 3, 1, 1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        BatchNormLeakyReLU2d(3)(torch.randn(shape))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        eager_pair(3)(torch.randn(shape))  # the message users know
    m = BatchNormLeakyReLU2d(3).eval()
    x = torch.randn(shape)
    ref = eager_pair(3).eval()
    assert_close(m(x), ref(x))


@pytest.mark.parametrize("inplace", [False, True], ids=["plain", "inplace"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)], ids=["no-samples", "no-rows"])
def test_empty_batch_in_training_matches_batchnorm2d(shape, inplace):
    """nn.BatchNorm2d trains through an empty batch (a detector's head with no boxes): an empty
    output, zero weight and bias gradients, the batch counted and the running statistics unchanged.
    The drop-in does the same instead of raising."""
    fused, eager = BatchNormLeakyReLU2d(3, momentum=None, inplace=inplace), eager_pair(3)
    eager[0].momentum = None
    for module in (fused, eager[0]):
        module.running_mean.fill_(2.0)
    outputs = []
    for module in (fused, eager):
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        out = module(x)
        out.sum().backward()
        outputs.append((out, x.grad))
    (out, grad), (ref_out, ref_grad) = outputs
    assert out.shape == ref_out.shape and grad.shape == ref_grad.shape == shape
    assert torch.equal(fused.weight.grad, eager[0].weight.grad) and torch.equal(fused.bias.grad, eager[0].bias.grad)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(fused, name), getattr(eager[0], name)), name


def test_empty_batch_in_eval():
    """Eval on an empty batch (e.g. the tail of a sharded dataset) returns an empty output."""
    m = BatchNormLeakyReLU2d(3).eval()
    out = m(torch.randn(0, 3, 4, 4))
    assert out.shape == (0, 3, 4, 4)


@requires_compiled
def test_meta_tensors_use_the_compiled_fakes_without_a_warning():
    """A model built on the meta device (shape inference, deferred init) runs on the fakes the compiled
    library registers; it is not told that the library was "built without" meta kernels."""
    layer = BatchNormLeakyReLU2d(3, device="meta")
    x = torch.randn(2, 3, 4, 4, device="meta", requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = layer(x)
        loss = PatchGANLoss("vanilla").generator(out)
        loss.backward()
    assert out.device.type == "meta" and out.shape == x.shape and x.grad.shape == x.shape
    assert layer.num_batches_tracked.device.type == "meta"


def test_weight_on_other_device():
    """Parameters on another device than the input: the message names both devices."""
    x = torch.randn(2, 3, 4, 4)
    w = torch.ones(3, device=OTHER_DEVICE)
    with pytest.raises(ValueError, match=rf"weight is on {OTHER_DEVICE}.*input is on cpu"):
        fops.bn_act_train(x, w, None)
    with pytest.raises(ValueError, match=rf"mean is on {OTHER_DEVICE}.*input is on cpu"):
        fops.bn_act_apply(x, torch.zeros(3, device=OTHER_DEVICE), torch.ones(3))
    m = BatchNormLeakyReLU2d(3, device=OTHER_DEVICE)
    with pytest.raises(ValueError, match=rf"weight is on {OTHER_DEVICE}"):
        m(x)


@pytest.mark.parametrize("view", ["permuted", "expanded", "channel_slice", "batch_slice", "flipped_hw"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_odd_layouts_are_handled(view, train):
    """Non-contiguous, zero-stride and offset views give eager's result (copied or walked, not misread)."""
    base = torch.randn(5, 8, 6, 7)
    x = {
        "permuted": base.permute(0, 1, 3, 2),                   # (5, 8, 7, 6), neither NCHW nor NHWC
        "expanded": base[:1, :, :1].expand(5, 8, 6, 7),         # zero strides
        "channel_slice": base[:, 1::2],                         # every other channel
        "batch_slice": base[2:4],                               # contiguous, non-zero storage offset
        "flipped_hw": base.transpose(2, 3).contiguous().transpose(2, 3)[:, :, 1:],
    }[view]
    channels = x.shape[1]
    ref, fused = eager_pair(channels), BatchNormLeakyReLU2d(channels)
    with torch.no_grad():
        for m in (ref[0], fused):
            m.weight.copy_(torch.linspace(0.5, 1.5, channels))
            m.running_mean.fill_(0.2)
    ref.train(train)
    fused.train(train)
    x1 = x.detach().clone().requires_grad_()  # eager gets a fresh contiguous copy
    x2 = x.detach().requires_grad_()  # the fused module gets the view itself
    out_ref, out = ref(x1), fused(x2)
    g = torch.randn(out.shape)
    out_ref.backward(g)
    out.backward(g)
    assert_close(out, out_ref)
    assert_close(x2.grad, x1.grad)
    assert_close(fused.running_var, ref[0].running_var)


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_nan_input_gives_nan_output(train, slope):
    """A NaN element poisons what it poisons in eager (its channel in training, itself in eval);
    everything else stays finite and equal to eager."""
    x = torch.randn(3, 4, 5, 5)
    x[1, 2, 3, 4] = math.nan
    ref = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)).train(train)
    fused = BatchNormLeakyReLU2d(4, slope).train(train)
    out, out_ref = fused(x), ref(x)
    assert torch.equal(torch.isnan(out), torch.isnan(out_ref)), "NaNs in other places than eager's"
    assert torch.isnan(out).any()
    assert_close(out, out_ref)
    assert_close(fused.running_mean, ref[0].running_mean)


@pytest.mark.parametrize("slope", [-0.1, 0.0])
def test_inplace_needs_positive_slope(slope):
    """inplace mode recovers the input from the output: impossible with a negative slope, and
    with ReLU (slope 0) the negative half is lost. Rejected up front, not in backward."""
    with pytest.raises(ValueError, match=rf"negative_slope > 0.*got {slope}"):
        BatchNormLeakyReLU2d(3, slope, inplace=True)
    BatchNormLeakyReLU2d(3, slope)  # fine without inplace
    with pytest.raises(ValueError, match="negative_slope > 0"):
        fops.bn_act_train(torch.randn(2, 3, 4, 4), None, None, 1e-5, slope, save_output=True)
    with pytest.raises(ValueError, match="negative_slope > 0"):
        fops.bn_act_apply(torch.randn(2, 3, 4, 4), torch.zeros(3), torch.ones(3), negative_slope=slope,
                          save_output=True)


def test_negative_slope_without_inplace_matches_eager():
    """A negative slope is legal without inplace (LeakyReLU allows it)."""
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    ref, fused = eager_pair(4, -0.3), BatchNormLeakyReLU2d(4, -0.3)
    out_ref, out = ref(x), fused(x)
    assert_close(out, out_ref)
    g1, = torch.autograd.grad(out_ref.sum(), x)
    g2, = torch.autograd.grad(out.sum(), x)
    assert_close(g2, g1)


# ---------------------------------------------------------------- losses


def test_bad_loss_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="unknown GAN loss mode 'bce'; valid modes are vanilla, lsgan, hinge, wgan"):
        PatchGANLoss("bce")
    with pytest.raises(ValueError, match="valid modes are vanilla, lsgan, hinge, wgan"):
        fops.gan_d_loss(torch.randn(2, 1), torch.randn(2, 1), "Vanilla")
    with pytest.raises(ValueError, match="valid modes are"):
        fops.gan_g_loss(torch.randn(2, 1), "ls-gan")


@pytest.mark.parametrize("mode", ["hinge", "wgan"])
@pytest.mark.parametrize("targets", [(0.9, 0.0), (1.0, 0.1)], ids=str)
def test_smoothed_targets_rejected_for_margin_losses(mode, targets):
    with pytest.raises(ValueError, match="apply to vanilla and lsgan only"):
        PatchGANLoss(mode, *targets)
    PatchGANLoss(mode)  # the defaults are fine


def test_empty_logits():
    with pytest.raises(ValueError, match=r"real_logits is empty \(shape \(0, 1, 30, 30\)\)"):
        PatchGANLoss().discriminator(torch.randn(0, 1, 30, 30), torch.randn(2, 1, 30, 30))
    with pytest.raises(ValueError, match="fake_logits is empty"):
        PatchGANLoss().generator(torch.randn(2, 0))


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_logits(dtype):
    with pytest.raises(TypeError, match=rf"fake_logits must be floating-point logits, got {dtype}"):
        PatchGANLoss("lsgan").discriminator(torch.randn(2, 1), torch.ones(2, 1, dtype=dtype))
    with pytest.raises(TypeError, match="floating-point"):
        PatchGANLoss().generator(torch.ones(2, 1, dtype=dtype))


def test_logits_of_different_dtypes():
    """The real and the fake map must agree in dtype; the message names both."""
    with pytest.raises(TypeError, match=r"real_logits are torch.float32 but fake_logits torch.bfloat16"):
        PatchGANLoss().discriminator(torch.randn(2, 1), torch.randn(2, 1, dtype=torch.bfloat16))


def test_logits_on_different_devices():
    with pytest.raises(ValueError, match=rf"real_logits are on cpu but fake_logits on {OTHER_DEVICE}"):
        fops.gan_d_loss(torch.randn(2, 1), torch.randn(2, 1, device=OTHER_DEVICE))


# ---------------------------------------------------------------- raw operators

# name -> (statement, the expected message or a part of it). Run in a child process: a kernel
# that crashes on bad arguments must fail its test, not take the test runner down with it.
# Whole messages pin the text of numbers, shapes, dtypes and devices, which csrc/common.h
# writes without an ostream: the same as torch's (sizes [2, 3], dtypes Float, doubles as %g).
RAW_CASES = {
    "stats-3d": ("f.bn_stats(torch.randn(2, 3, 4, device=d))",
                 "fastgan: input must be 4-D (N, C, H, W), got 3-D"),
    "stats-int": ("f.bn_stats(torch.ones(2, 3, 4, 4, dtype=torch.int32, device=d))",
                  "fastgan: input must be float32/float16/bfloat16/float64, got Int"),
    "apply-mean-shape": ("f.bn_act_apply(x, torch.zeros(4, device=d), o, None, None, 0.2, False)",
                         "fastgan: mean must have shape (3,), got [4]"),
    "apply-mean-0d": ("f.bn_act_apply(x, torch.zeros((), device=d), o, None, None, 0.2, False)",
                      "fastgan: mean must have shape (3,), got []"),
    "apply-invstd-dtype": ("f.bn_act_apply(x, z, o.double(), None, None, 0.2, False)",
                           "fastgan: invstd must be Float, got Double"),
    "apply-weight-2d": ("f.bn_act_apply(x, z, o, torch.ones(3, 1, device=d), None, 0.2, False)",
                        "fastgan: weight must have shape (3,), got [3, 1]"),
    "train-bias-shape": ("f.bn_act_train(x, None, torch.zeros(2, device=d), 1e-5, 0.2, False)",
                         "fastgan: bias must have shape (3,), got [2]"),
    "train-weight-dtype": ("f.bn_act_train(x, o.half(), None, 1e-5, 0.2, False)",
                           "fastgan: weight must be Float, got Half"),
    "reduce-grad-shape": ("f.bn_act_backward_reduce(torch.randn(2, 3, 4, 5, device=d), x, z, o, None, None, 0.2, False)",
                          "fastgan: grad_out has shape [2, 3, 4, 5] but saved has shape [2, 3, 4, 4]"),
    "reduce-grad-dtype": ("f.bn_act_backward_reduce(x.double(), x, z, o, None, None, 0.2, False)",
                          "fastgan: grad_out is Double but saved is Float"),
    "reduce-negative-slope-output": ("f.bn_act_backward_reduce(x, x, z, o, None, None, -0.2, True)",
                                     "fastgan: recovering from the output needs negative_slope > 0, got -0.2"),
    "reduce-zero-slope-output": ("f.bn_act_backward_reduce(x, x, z, o, None, None, 0.0, True)",
                                 "negative_slope > 0, got 0"),
    "input-mean-dz-shape": ("f.bn_act_backward_input(x, x, z, o, None, None, torch.zeros(5, device=d), z, 0.2, False)",
                            "fastgan: mean_dz must have shape (3,), got [5]"),
    "d-loss-mode": ("f.gan_d_loss(torch.randn(2, 1, device=d), torch.randn(2, 1, device=d), 'bce', 1.0, 0.0)",
                    "fastgan: unknown GAN loss mode 'bce'; valid modes are vanilla, lsgan, hinge, wgan"),
    "g-loss-mode": ("f.gan_g_loss(torch.randn(2, 1, device=d), '', 1.0)", "valid modes are"),
    "d-loss-empty": ("f.gan_d_loss(torch.randn(0, device=d), torch.randn(2, device=d), 'vanilla', 1.0, 0.0)",
                     "fastgan: real_logits is empty"),
    "d-loss-dtypes": ("f.gan_d_loss(torch.randn(2, device=d), torch.randn(2, device=d).double(), 'vanilla', 1.0, 0.0)",
                      "fastgan: real_logits is Float but fake_logits is Double"),
    "g-loss-int": ("f.gan_g_loss(torch.ones(2, dtype=torch.long, device=d), 'lsgan', 1.0)",
                   "fastgan: fake_logits must be a floating-point tensor, got Long"),
}
# Tensors on two devices: only a CUDA kernel is handed them (CPU with CUDA dispatches to CUDA).
RAW_CUDA_CASES = {
    "apply-mean-device": ("f.bn_act_apply(x, z.cpu(), o, None, None, 0.2, False)",
                          "fastgan: mean is on cpu but the input is on cuda:0"),
    "reduce-grad-device": ("f.bn_act_backward_reduce(x.cpu(), x, z, o, None, None, 0.2, False)",
                           "fastgan: grad_out is on cpu but saved is on cuda:0"),
    "d-loss-devices": ("f.gan_d_loss(torch.randn(2, device=d), torch.randn(2), 'vanilla', 1.0, 0.0)",
                       "fastgan: real_logits is on cuda:0 but fake_logits is on cpu"),
}
RAW_DEVICES = ["cpu"] + (["cuda"] if fops.backend_info()["cuda"] else [])
RAW_CASES_BY_DEVICE = {device: {**RAW_CASES, **(RAW_CUDA_CASES if device == "cuda" else {})}
                       for device in RAW_DEVICES}

_RAW_SCRIPT = """
import json, sys, torch, fastgan.ops
f = torch.ops.fastgan
cases = json.loads(sys.argv[1])
for key, device, statement in cases:
    d = device
    x = torch.randn(2, 3, 4, 4, device=d)
    z, o = torch.zeros(3, device=d), torch.ones(3, device=d)
    print(json.dumps({"key": key, "started": True}), flush=True)
    try:
        exec(statement)
        result = {"kind": "no error"}
    except Exception as error:
        result = {"kind": type(error).__name__, "message": str(error)}
    if d == "cuda":
        torch.cuda.synchronize()
    print(json.dumps(dict(result, key=key)), flush=True)
"""


@pytest.fixture(scope="module")
def raw_results():
    """Runs every raw-op case in child processes; a case whose process dies is recorded as a
    crash and the rest continue in a fresh process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pending = [[f"{device}-{name}", device, statement] for device, cases in RAW_CASES_BY_DEVICE.items()
               for name, (statement, _) in cases.items()]
    results = {}
    while pending:
        proc = subprocess.run([sys.executable, "-c", _RAW_SCRIPT, json.dumps(pending)], env=env,
                              capture_output=True, text=True, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.pop("started", False):
                started = record["key"]
            else:
                results[record["key"]] = record
                started = None
        if started is None and proc.returncode != 0:  # died outside any case (import error, ...)
            for key, _, _ in pending:
                results.setdefault(key, {"kind": "child failed", "message": proc.stderr[-2000:]})
            break
        if started is not None:
            results[started] = {"kind": "crash", "message": f"exit status {proc.returncode}\n{proc.stderr[-1500:]}"}
        pending = [case for case in pending if case[0] not in results]
    return results


@requires_compiled
@pytest.mark.parametrize("case, device", [pytest.param(case, device, marks=[pytest.mark.cuda] if device == "cuda" else [])
                                          for device, cases in RAW_CASES_BY_DEVICE.items() for case in cases])
def test_raw_op_errors(raw_results, case, device):
    """Calling torch.ops.fastgan.* directly with bad arguments raises RuntimeError with the
    kernel's 'fastgan:' message (TORCH_CHECK); it never crashes the process."""
    outcome = raw_results[f"{device}-{case}"]
    assert outcome["kind"] != "crash", f"the process died (a segfault is -11): {outcome['message']}"
    assert outcome["kind"] == "RuntimeError", outcome
    assert "fastgan" in outcome["message"]
    assert RAW_CASES_BY_DEVICE[device][case][1] in outcome["message"]


@requires_compiled
def test_raw_ops_accept_empty_statistics_input():
    """bn_stats on an empty batch gives NaN (as torch.var_mean), not garbage or a crash."""
    mean, var = torch.ops.fastgan.bn_stats(torch.randn(0, 3, 2, 2))
    assert torch.isnan(mean).all() and torch.isnan(var).all()


def test_zero_channels_train_and_backward_without_a_crash():
    """No channels, no statistics: the backward's per-channel count must not divide by C (it once
    killed the process with SIGFPE)."""
    x = torch.randn(2, 0, 4, 4, requires_grad=True)
    out, mean, var = fops.bn_act_train(x)
    out.sum().backward()
    assert out.shape == x.shape and mean.shape == (0,) and x.grad.shape == x.shape
