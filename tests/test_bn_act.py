"""BatchNormLeakyReLU2d and the BatchNorm ops against eager BatchNorm2d + LeakyReLU/ReLU.

The fused module is sold as a drop-in replacement: same numbers (within the dtype's
tolerance), same running statistics, same gradients, same output layout and the same
state_dict as the eager pair it replaces.
"""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import fastgan.ops as fops
from fastgan.nn import BatchNormLeakyReLU2d

from conftest import COMPILED, DEVICES, DTYPE_IDS, FLOAT_DTYPES, LAYOUTS, assert_close, make_layout, requires_compiled

SHAPE = (4, 6, 5, 7)
HALF = (torch.float16, torch.bfloat16)


def oracle_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half types are checked against eager fp32 on the (exactly) upcast values: eager half
    BatchNorm rounds twice (normalized value, then activation), which flips LeakyReLU's mask
    near zero and makes it a noisier oracle than the contract it stands for."""
    return torch.float32 if dtype in HALF else dtype


def make_pair(channels, slope, *, affine=True, track=True, momentum=0.1, inplace=False, eps=1e-5,
              device="cpu", param_dtype=torch.float32):
    """An eager Sequential(BatchNorm2d, act) and a fused module with identical state.

    The fused module's parameters/buffers are in param_dtype; the eager one's in
    oracle_dtype(param_dtype), holding the same values.
    """
    norm = nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
    with torch.no_grad():
        if affine:
            # Non-trivial, non-zero weights of both signs and non-zero biases.
            sign = torch.where(torch.arange(channels) % 3 == 2, -1.0, 1.0)
            norm.weight.copy_(sign * (0.5 + torch.rand(channels)))
            norm.bias.copy_(torch.randn(channels) * 0.5)
        if track:
            norm.running_mean.copy_(torch.randn(channels) * 0.3)
            norm.running_var.copy_(0.5 + torch.rand(channels))
    norm.to(param_dtype)  # round to the fused module's precision
    act = nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)
    eager = nn.Sequential(norm, act).to(device=device, dtype=oracle_dtype(param_dtype))
    fused = BatchNormLeakyReLU2d(channels, slope, eps=eps, momentum=momentum, affine=affine,
                                 track_running_stats=track, inplace=inplace)
    fused.load_state_dict(norm.state_dict())
    fused.to(device=device, dtype=param_dtype)
    return eager, fused


def step(module, x, grad_out):
    """One forward + backward; returns (output, input grad)."""
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(grad_out)
    return out.detach(), x.grad


def compare_modules(eager, fused, inputs, dtype, *, train: bool, check_layout=True):
    """Runs the same inputs through both modules and compares everything observable."""
    eager.train(train)
    fused.train(train)
    ref_dtype = oracle_dtype(dtype)
    for i, x in enumerate(inputs):
        grad_out = torch.randn(x.shape, dtype=x.dtype, device=x.device)
        ref_out, ref_gx = step(eager, x.to(ref_dtype), grad_out.to(ref_dtype))
        out, gx = step(fused, x, grad_out)
        assert out.dtype == gx.dtype == x.dtype
        if check_layout:
            assert out.stride() == ref_out.stride(), f"output strides {out.stride()} != eager {ref_out.stride()}"
        assert_close(out.to(ref_dtype), ref_out, dtype, msg=f"output, step {i}")
        assert_close(gx.to(ref_dtype), ref_gx, dtype, factor=2, msg=f"input grad, step {i}")
        for p_ref, p in zip(eager.parameters(), fused.parameters()):
            assert p.grad.dtype == p.dtype
            # Parameter gradients are accumulated over the steps (sums over N*H*W).
            assert_close(p.grad.to(ref_dtype), p_ref.grad, dtype, factor=4, msg=f"param grad, step {i}")
    norm = eager[0]
    if norm.track_running_stats:
        stat_dtype = fused.running_mean.dtype
        assert_close(fused.running_mean.to(ref_dtype), norm.running_mean, stat_dtype, msg="running_mean")
        assert_close(fused.running_var.to(ref_dtype), norm.running_var, stat_dtype, msg="running_var")
        assert fused.num_batches_tracked.item() == norm.num_batches_tracked.item()
        assert fused.num_batches_tracked.dtype == torch.long
    else:
        assert fused.running_mean is None and fused.running_var is None
        assert fused.num_batches_tracked is None


def make_inputs(dtype, layout, device, count=3, shape=SHAPE):
    xs = []
    for i in range(count):
        x = torch.randn(shape, dtype=torch.float64) * (1 + i) + 0.5 * i
        xs.append(make_layout(x.to(device=device, dtype=dtype), layout))
    return xs


@pytest.mark.parametrize("slope,inplace", [(0.0, False), (0.2, False), (0.2, True)],
                         ids=["relu", "leaky0.2", "leaky0.2-inplace"])  # inplace needs slope > 0
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_module_matches_eager(device, train, layout, dtype, slope, inplace):
    """Three steps of forward+backward equal eager BN+act: outputs, layout, grads, running stats."""
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    eager, fused = make_pair(SHAPE[1], slope, inplace=inplace, device=device, param_dtype=param_dtype)
    compare_modules(eager, fused, make_inputs(dtype, layout, device), dtype, train=train)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_module_options_match_eager(device, affine, track, momentum):
    """affine, track_running_stats and momentum=None (cumulative average) behave as in BatchNorm2d."""
    eager, fused = make_pair(SHAPE[1], 0.2, affine=affine, track=track, momentum=momentum, device=device)
    inputs = make_inputs(torch.float32, "nchw", device)
    compare_modules(eager, fused, inputs, torch.float32, train=True)
    # Eval after training uses the running statistics (or batch statistics without them).
    compare_modules(eager, fused, inputs[:1], torch.float32, train=False)


def test_module_momentum_none_is_cumulative_average():
    """momentum=None: after k batches the running mean is the plain average of the batch means."""
    fused = BatchNormLeakyReLU2d(3, momentum=None)
    batches = [torch.randn(4, 3, 5, 5) + i for i in range(4)]
    for x in batches:
        fused(x)
    expected = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches]).mean(0)
    assert_close(fused.running_mean, expected)
    assert fused.num_batches_tracked.item() == 4


def test_module_momentum_none_keeps_float64_running_stats_exact():
    """The averaging factor 1/k is taken in the buffers' dtype: float64 stats stay float64-accurate
    (a float32 factor left errors of 1e-8 at a mean of 100)."""
    eager, fused = make_pair(3, 0.2, momentum=None, param_dtype=torch.float64)
    eager.double()
    for i in range(3):
        x = torch.randn(4, 3, 5, 5, dtype=torch.float64) + 100 * (i + 1)
        eager(x), fused(x)
    torch.testing.assert_close(fused.running_mean, eager[0].running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused.running_var, eager[0].running_var, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", HALF, ids=DTYPE_IDS.get)
def test_module_momentum_none_keeps_averaging_in_half_buffers_after_many_batches(dtype):
    """momentum=None in a module cast to a half type: past 65504 batches (float16's largest value)
    the factor 1/k is still BatchNorm2d's, not 1/inf = 0, which froze the running statistics."""
    eager, fused = make_pair(3, 0.2, momentum=None, param_dtype=dtype)
    eager.to(dtype)
    for module in (eager[0], fused):
        module.num_batches_tracked.fill_(70000)
        module.running_mean.zero_()
    x = torch.full((4, 3, 5, 5), 100.0, dtype=dtype)
    eager(x), fused(x)
    assert eager[0].running_mean.gt(0).all()
    torch.testing.assert_close(fused.running_mean, eager[0].running_mean, rtol=1e-2, atol=0)


def test_module_half_params_match_eager():
    """A model cast whole to bfloat16 (params and buffers too) still matches the eager pair."""
    eager, fused = make_pair(SHAPE[1], 0.2, param_dtype=torch.bfloat16)
    assert fused.weight.dtype == torch.bfloat16
    compare_modules(eager, fused, make_inputs(torch.bfloat16, "nchw", "cpu", count=2), torch.bfloat16, train=True)
    compare_modules(eager, fused, make_inputs(torch.bfloat16, "nchw", "cpu", count=1), torch.bfloat16, train=False)


def test_module_eps_is_used():
    """A large eps changes the output exactly as BatchNorm2d's eps does."""
    eager, fused = make_pair(SHAPE[1], 0.2, eps=0.5)
    compare_modules(eager, fused, make_inputs(torch.float32, "nchw", "cpu", count=2), torch.float32, train=True)
    compare_modules(eager, fused, make_inputs(torch.float32, "nchw", "cpu", count=1), torch.float32, train=False)


@pytest.mark.parametrize("layout", ["permuted", "strided"])
def test_module_non_contiguous_input(device, layout):
    """Inputs that are neither NCHW nor NHWC contiguous are handled, not rejected or mangled."""
    eager, fused = make_pair(SHAPE[1], 0.2, device=device)
    inputs = make_inputs(torch.float32, layout, device, count=2)
    assert not inputs[0].is_contiguous() and not inputs[0].is_contiguous(memory_format=torch.channels_last)
    compare_modules(eager, fused, inputs, torch.float32, train=True, check_layout=False)
    compare_modules(eager, fused, inputs[:1], torch.float32, train=False, check_layout=False)


@requires_compiled
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_a_gradient_in_another_layout_is_copied_once_for_both_backward_kernels(train):
    """sum().backward() hands the module an expanded gradient: the backward copies it into the
    kernels' layout once, not once in each of its two kernels (a full extra pass over memory)."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    module = BatchNormLeakyReLU2d(8).train(train)
    out = module(x).sum()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.autograd.grad(out, [x, *module.parameters()])
    assert sum(e.count for e in prof.key_averages() if e.key == "aten::clone") == 1


@requires_compiled
def test_training_step_dispatches_no_avoidable_ops():
    """Host time at small shapes is paid per dispatched op: the backward neither recomputes the
    inverse deviation (the forward returns it) nor fills zeros for the statistics' gradients that
    nothing used, and the running statistics take one foreach call for both buffers."""
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    module = BatchNormLeakyReLU2d(8)
    with profile(activities=[ProfilerActivity.CPU]) as forward:
        out = module(x)
    grad_out = torch.ones_like(out)
    with profile(activities=[ProfilerActivity.CPU]) as backward:
        torch.autograd.grad(out, [x, *module.parameters()], grad_out)
    names = {e.key for e in backward.key_averages()}
    assert not names & {"aten::zeros", "aten::zeros_like", "aten::zero_", "aten::fill_", "aten::rsqrt"}, names
    assert {"fastgan::bn_act_backward_reduce", "fastgan::bn_act_backward_input"} <= names
    assert [e.count for e in forward.key_averages() if e.key == "aten::_foreach_lerp_"] == [1]


def test_bn_act_train_op_returns_the_inverse_deviation_its_backward_reads():
    """The raw op's fourth output is 1 / sqrt(var + eps); fastgan.ops.bn_act_train keeps to three."""
    x = torch.randn(3, 4, 5, 6)
    if COMPILED:
        out, mean, var, invstd = torch.ops.fastgan.bn_act_train(x, None, None, 1e-3, 0.2, False)
        assert_close(invstd, torch.rsqrt(var + 1e-3))
    assert len(fops.bn_act_train(x, None, None, 1e-3, 0.2)) == 3


def test_module_inplace_does_not_modify_input():
    """inplace=True saves the output for backward; the caller's input must be left intact."""
    fused = BatchNormLeakyReLU2d(SHAPE[1], 0.1, inplace=True)
    x = torch.randn(SHAPE)
    before = x.clone()
    fused(x)
    torch.testing.assert_close(x, before, rtol=0, atol=0)


def test_module_inplace_backward_detects_modified_output():
    """With inplace=True the output is saved: changing it in place before backward must raise,
    not silently produce wrong gradients."""
    fused = BatchNormLeakyReLU2d(SHAPE[1], 0.1, inplace=True)
    x = torch.randn(SHAPE, requires_grad=True)
    out = fused(x)
    out.mul_(2)
    if fops.backend_info()["backend"] == "reference":
        pytest.skip("the reference keeps the input for backward whatever save_output says")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


# ---------------------------------------------------------------- state_dict


@pytest.mark.parametrize("track", [True, False], ids=["track", "notrack"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_state_dict_round_trip(affine, track):
    """A stock BatchNorm2d checkpoint loads strictly into the fused module (and back) and
    gives the same eval outputs."""
    eager, _ = make_pair(SHAPE[1], 0.2, affine=affine, track=track)
    eager[0].train()
    for _ in range(2):
        eager(torch.randn(SHAPE))  # non-default running stats and num_batches_tracked
    state = eager[0].state_dict()
    fused = BatchNormLeakyReLU2d(SHAPE[1], 0.2, affine=affine, track_running_stats=track)
    fused.load_state_dict(state, strict=True)
    assert list(fused.state_dict().keys()) == list(state.keys())
    for key, value in fused.state_dict().items():
        assert torch.equal(value, state[key]), key
    back = nn.BatchNorm2d(SHAPE[1], affine=affine, track_running_stats=track)
    back.load_state_dict(fused.state_dict(), strict=True)
    eager.eval()
    fused.eval()
    x = torch.randn(SHAPE)
    assert_close(fused(x), eager(x))


requires_norm_bias_flag = pytest.mark.skipif(
    "bias" not in inspect.signature(nn.BatchNorm2d).parameters, reason="this torch's BatchNorm2d has no bias flag")


@requires_norm_bias_flag
@pytest.mark.parametrize("inplace", [False, True], ids=["plain", "inplace"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_module_without_bias_is_batchnorm_without_bias(train, inplace):
    """BatchNorm2d(C, bias=False) (a learned scale, no shift): the fused module with bias=False has
    its parameters and state_dict keys, loads its checkpoint strictly and computes the same."""
    norm = nn.BatchNorm2d(SHAPE[1], bias=False)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    fused = BatchNormLeakyReLU2d(SHAPE[1], 0.2, inplace=inplace, bias=False)
    assert fused.bias is None and [name for name, _ in fused.named_parameters()] == ["weight"]
    fused.load_state_dict(norm.state_dict(), strict=True)
    assert list(fused.state_dict()) == list(norm.state_dict())
    compare_modules(nn.Sequential(norm, nn.LeakyReLU(0.2)), fused, make_inputs(torch.float32, "nchw", "cpu"),
                    torch.float32, train=train)


# ---------------------------------------------------------------- gradcheck (double, CPU)


@pytest.mark.parametrize("slope,save_output", [(0.0, False), (0.2, False), (1.5, False), (0.2, True), (1.5, True)],
                         ids=["relu", "leaky0.2", "slope1.5", "leaky0.2-save_output", "slope1.5-save_output"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck_bn_act_train(layout, slope, save_output):
    """The training op's registered backward is the true derivative (weight and bias too)."""
    x = make_layout(torch.randn(2, 3, 3, 4, dtype=torch.float64), layout).requires_grad_()
    w = (torch.tensor([0.7, -1.3, 1.1], dtype=torch.float64)).requires_grad_()
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: fops.bn_act_train(x, w, b, 1e-5, slope, save_output)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("save_output", [False, True], ids=["save_input", "save_output"])
def test_gradcheck_bn_act_train_no_weight(affine, save_output):
    """weight/bias = None (affine=False) and partially-required gradients are handled."""
    x = torch.randn(3, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.2, -0.6], dtype=torch.float64) if affine else None
    b = torch.tensor([0.3, 0.1], dtype=torch.float64, requires_grad=True) if affine else None
    fn = lambda x, b: fops.bn_act_train(x, w, b, 1e-3, 0.1, save_output)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("slope,save_output", [(0.0, False), (0.3, False), (0.3, True)],
                         ids=["relu", "leaky0.3", "leaky0.3-save_output"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck_bn_act_apply(layout, slope, save_output):
    """The fixed-statistics op: gradients to input, mean, invstd, weight and bias."""
    x = make_layout(torch.randn(2, 3, 3, 4, dtype=torch.float64), layout).requires_grad_()
    mean = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64, requires_grad=True)
    invstd = torch.tensor([1.5, 0.8, 1.1], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.9, -1.4, 0.6], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.2, 0.05, -0.1], dtype=torch.float64, requires_grad=True)
    fn = lambda *a: fops.bn_act_apply(*a, negative_slope=slope, save_output=save_output)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, mean, invstd, w, b), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_module_inplace():
    """The inplace module (output saved, input recovered) in double: train and eval."""
    m = BatchNormLeakyReLU2d(3, 0.25, inplace=True).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.8, -1.2, 1.5]))
        m.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: m(x), (x, m.weight, m.bias), eps=1e-6, atol=1e-6)
    m.eval()
    assert torch.autograd.gradcheck(lambda x, w, b: m(x), (x, m.weight, m.bias), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- double backward (gradient penalties)


@pytest.mark.parametrize("slope", [0.0, 0.2], ids=["relu", "leaky0.2"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradgradcheck_bn_act_train(layout, slope):
    """create_graph=True (R1, WGAN-GP): the gradient is itself differentiable, in x, weight and bias."""
    x = make_layout(torch.randn(2, 3, 3, 4, dtype=torch.float64), layout).requires_grad_()
    w = torch.tensor([0.7, -1.3, 1.1], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: fops.bn_act_train(x, w, b, 1e-5, slope)[0]  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradgradcheck_bn_act_apply(layout):
    """The fixed-statistics op twice differentiated, statistics included (the synchronized forward's)."""
    x = make_layout(torch.randn(2, 3, 3, 4, dtype=torch.float64), layout).requires_grad_()
    mean = torch.tensor([0.1, -0.3, 0.2], dtype=torch.float64, requires_grad=True)
    invstd = torch.tensor([1.5, 0.8, 1.1], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.9, -1.4, 0.6], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.2, 0.05, -0.1], dtype=torch.float64, requires_grad=True)
    fn = lambda *a: fops.bn_act_apply(*a, negative_slope=0.3)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, mean, invstd, w, b), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("device", DEVICES)
def test_gradient_penalty_matches_eager(device, training):
    """A penalty on the input gradient trains the layer as it trains BatchNorm2d + LeakyReLU."""
    dtype = torch.float64 if device == "cpu" else torch.float32
    fused = BatchNormLeakyReLU2d(4).to(device, dtype).train(training)
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5)
        fused.bias.uniform_(-0.5, 0.5)
        fused.running_mean.uniform_(-0.3, 0.3)
        fused.running_var.uniform_(0.5, 1.5)
    eager = nn.Sequential(nn.BatchNorm2d(4), nn.LeakyReLU(0.2)).to(device, dtype).train(training)
    eager[0].load_state_dict(fused.state_dict())
    x = torch.randn(3, 4, 5, 5, device=device, dtype=dtype, requires_grad=True)
    second = []
    for module in (fused, eager):
        (grad_x,) = torch.autograd.grad((module(x) ** 3).sum(), x, create_graph=True)
        second.append(torch.autograd.grad(grad_x.square().sum(), [x, *module.parameters()]))
    for got, want in zip(*second):
        assert want.abs().max() > 1  # a silent zero (non-differentiable backward) cannot pass
        assert_close(got, want, dtype=dtype, factor=10)


@requires_compiled
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_double_backward_in_place_mode_is_refused(training):
    """In-place mode has overwritten its input, so a differentiable gradient in it is impossible: say so."""
    m = BatchNormLeakyReLU2d(3, inplace=True).train(training)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = m(x * 1.0)
    with pytest.raises(RuntimeError, match=r"double backward \(create_graph=True\) is not supported in in-place "
                                           r"mode .* use inplace=False for gradient penalties"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


# ---------------------------------------------------------------- bn_stats


@pytest.mark.parametrize("layout", LAYOUTS + ["permuted"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS.get)
def test_bn_stats_matches_var_mean(device, dtype, layout):
    """bn_stats = torch.var_mean over (N, H, W), biased, in fp32 (fp64 for fp64)."""
    x = make_layout((torch.randn(5, 7, 9, 11, dtype=torch.float64) * 3 + 2).to(device=device, dtype=dtype), layout)
    mean, var = fops.bn_stats(x)
    stat = torch.float64 if dtype == torch.float64 else torch.float32
    assert mean.dtype == var.dtype == stat and mean.shape == var.shape == (7,)
    ref_var, ref_mean = torch.var_mean(x.to(torch.float64), dim=(0, 2, 3), correction=0)
    # The input is exact in its own dtype, so the statistics are held to the fp32/fp64 contract.
    assert_close(mean, ref_mean.to(stat), stat)
    assert_close(var, ref_var.to(stat), stat)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=DTYPE_IDS.get)
def test_bn_stats_large_mean_small_variance(dtype, layout):
    """mean 1e3, std 1e-2: E[x^2] - E[x]^2 in fp32 would lose every digit of the variance."""
    base = 1e3 + 1e-2 * torch.randn(8, 4, 16, 16, dtype=torch.float64)
    if dtype == torch.bfloat16:
        base = 1e3 + 4.0 * torch.randn(8, 4, 16, 16, dtype=torch.float64)  # bf16 spacing at 1e3 is 4
    x = make_layout(base.to(dtype), layout)
    mean, var = fops.bn_stats(x)
    ref_var, ref_mean = torch.var_mean(x.to(torch.float64), dim=(0, 2, 3), correction=0)
    stat = mean.dtype
    torch.testing.assert_close(mean, ref_mean.to(stat), rtol=1e-6 if stat == torch.float32 else 1e-12, atol=0)
    torch.testing.assert_close(var, ref_var.to(stat), rtol=1e-4 if stat == torch.float32 else 1e-9, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bn_stats_first_element_outlier(layout):
    """Statistics (and so the module's output) stay within the fp32 contract when a channel's
    first element is far from its mean: a zero-padded border pixel before a channel of mean 5,
    std 0.05. Eager fp32 BatchNorm gets this right to ~1e-7."""
    x = 5 + 0.05 * torch.randn(4, 3, 32, 32, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # the first element of every channel, in both layouts
    x = make_layout(x.float(), layout)
    ref_var, ref_mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    eager_var, _ = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(eager_var, ref_var.float(), rtol=1e-5, atol=0)  # the bar is reachable
    mean, var = fops.bn_stats(x)
    torch.testing.assert_close(mean, ref_mean.float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(var, ref_var.float(), rtol=1e-5, atol=0)
    eager, fused = make_pair(3, 0.2)
    assert_close(fused(x), eager(x), msg="module output")


def test_bn_act_train_returns_batch_stats():
    """bn_act_train's mean/var are the biased batch statistics, not differentiable."""
    x = torch.randn(3, 4, 5, 6, requires_grad=True)
    out, mean, var = fops.bn_act_train(x, None, None, 1e-5, 0.2)
    ref_var, ref_mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    assert_close(mean, ref_mean)
    assert_close(var, ref_var)
    assert out.requires_grad
    ref = nn.functional.leaky_relu(nn.functional.batch_norm(x.detach(), None, None, training=True), 0.2)
    assert_close(out.detach(), ref)


def test_bn_act_eval_function_matches_eager():
    """bn_act_eval (running statistics) equals F.batch_norm(training=False) + leaky_relu."""
    x = torch.randn(3, 4, 5, 6)
    rm, rv = torch.randn(4), torch.rand(4) + 0.5
    w, b = torch.randn(4), torch.randn(4)
    out = fops.bn_act_eval(x, rm, rv, w, b, eps=1e-3, negative_slope=0.05)
    ref = nn.functional.leaky_relu(nn.functional.batch_norm(x, rm, rv, w, b, False, eps=1e-3), 0.05)
    assert_close(out, ref)


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_zero_preactivation_takes_slope(slope):
    """act'(0) = slope, as nn.LeakyReLU: a constant channel normalizes to exactly 0 (bias 0)."""
    x = torch.zeros(2, 2, 3, 3)
    x[:, 1] = torch.randn(2, 3, 3)
    x.requires_grad_()
    eager, fused = make_pair(2, slope)
    with torch.no_grad():
        for m in (eager[0], fused):
            m.bias.zero_()
    g = torch.randn(x.shape)
    ref_out, ref_gx = step(eager, x, g)
    out, gx = step(fused, x, g)
    assert_close(out, ref_out)
    assert_close(gx, ref_gx)
    assert_close(fused.bias.grad, eager[0].bias.grad)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_maps_minus_inf_to_zero_and_masks_any_gradient(device, layout):
    """slope 0 is nn.ReLU: a pre-activation that overflows to -inf (finite x times weight 10) gives
    0 (not -inf * 0 = nan), and the masked positions pass no gradient, however bad (inf, nan)
    the incoming gradient is there."""
    x = torch.tensor([-3.4e38, -1.0, 2.0, -3e38, 0.5, 1.0]).reshape(1, 1, 2, 3).repeat(2, 3, 1, 1)
    x = make_layout(x.to(device), layout).requires_grad_()
    stats = dict(running_mean=torch.zeros(3, device=device), running_var=torch.ones(3, device=device))
    weight = torch.full((3,), 10.0, device=device)
    out = fops.bn_act_eval(x, stats["running_mean"], stats["running_var"], weight, None, 1e-5, 0.0)
    x_ref = x.detach().clone().requires_grad_()
    ref = torch.relu(torch.nn.functional.batch_norm(x_ref, **stats, weight=weight, training=False))
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)
    grad = torch.tensor([1.0, float("inf"), 1.0, float("nan"), 1.0, 1.0], device=device).reshape(1, 1, 2, 3)
    grad = grad.expand_as(x).contiguous()
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-6, atol=0)


def test_nan_and_inf_batches_give_nan_statistics_as_eager(device):
    """A nan, or an inf that is not a channel's first value, makes that channel's batch variance nan
    (no clamp at 0 turning it into 0), so the output and the running variance are nan as in eager."""
    eager, fused = make_pair(3, 0.2, device=device)
    x = torch.randn(2, 3, 4, 4, device=device)
    x[1, 0, 2, 2] = float("nan")
    x[1, 1, 3, 3] = float("inf")
    out, ref = fused(x), eager(x)
    for c in range(3):
        assert torch.isnan(out[:, c]).any() == torch.isnan(ref[:, c]).any(), c
    assert torch.equal(torch.isnan(fused.running_var), torch.isnan(eager[0].running_var))
    assert torch.isnan(fused.running_var[:2]).all() and torch.isfinite(fused.running_var[2])


def test_half_subnormals_survive_flush_denormal_mode():
    """torch.set_flush_denormal(True) reads float subnormals as 0; fp16 subnormals (|x| < 6.1e-5)
    must still convert exactly, as they do for eager half BatchNorm."""
    x = (torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)) * 1e-5).half()
    expected = fops.bn_act_train(x, None, None, 1e-5, 0.2)[0]
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-denormal mode")
    try:
        mean, _ = fops.bn_stats(x)
        out = fops.bn_act_train(x, None, None, 1e-5, 0.2)[0]
    finally:
        torch.set_flush_denormal(False)
    assert torch.equal(out, expected)
    torch.testing.assert_close(mean, x.double().mean((0, 2, 3)).float(), rtol=1e-5, atol=0)
