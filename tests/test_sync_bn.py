"""SyncBatchNormLeakyReLU2d across two gloo processes equals one process over the whole batch;
convert_sync_batchnorm; the synchronized module outside a process group."""
from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fastgan.nn import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, convert_sync_batchnorm

import sync_bn_worker as worker
from conftest import ROOT, assert_close, requires_compiled

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    """Runs tests/sync_bn_worker.py as 2 gloo ranks once; returns each rank's results."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    tmp = tmp_path_factory.mktemp("sync_bn")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    last_error = None
    for _attempt in range(2):  # a port taken between choosing and binding gets one retry
        port = _free_port()
        procs = [subprocess.Popen([sys.executable, str(Path(worker.__file__)), str(rank), str(WORLD_SIZE), str(port),
                                   str(tmp / f"rank{rank}.pt")], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for rank in range(WORLD_SIZE)]
        outputs = []
        for proc in procs:
            try:
                outputs.append(proc.communicate(timeout=120)[0])
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                pytest.fail("the 2-process gloo run timed out (a rank deadlocked in all_reduce?)")
        if all(p.returncode == 0 for p in procs):
            return [torch.load(tmp / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
        last_error = "\n".join(f"--- rank {r} (exit {p.returncode}):\n{o[-3000:]}"
                               for r, (p, o) in enumerate(zip(procs, outputs)))
        if "address already in use" not in last_error.lower():
            break
    pytest.fail(f"sync BN workers failed:\n{last_error}")


def single_process(name):
    """The reference: the plain fused module and eager BN+act over the concatenated batches."""
    kwargs, dtype, memory_format, sizes = worker.CONFIGS[name]
    sync = worker.make_module(kwargs, dtype)
    plain = BatchNormLeakyReLU2d(worker.CHANNELS, sync.negative_slope, sync.eps, sync.momentum, sync.affine,
                                 sync.track_running_stats, sync.inplace).to(sync.running_mean.dtype)
    plain.load_state_dict(sync.state_dict())
    eager_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    eager = nn.Sequential(nn.BatchNorm2d(worker.CHANNELS, sync.eps, sync.momentum, sync.affine),
                          nn.LeakyReLU(sync.negative_slope)).to(eager_dtype)
    eager[0].load_state_dict(sync.state_dict())
    steps = {"plain": [], "eager": []}
    for x, g in worker.make_batches(sizes, dtype, memory_format):
        for key, module, cast in (("plain", plain, dtype), ("eager", eager, eager_dtype)):
            xx = x.detach().to(cast).clone().requires_grad_()
            out = module(xx)
            out.backward(g.to(cast))
            steps[key].append({"out": out.detach(), "grad": xx.grad})
    return plain, eager, steps


@pytest.mark.parametrize("name", list(worker.CONFIGS))
def test_two_ranks_match_one_process(distributed_results, name):
    """Outputs, input grads and running stats per rank equal the single-process run on the
    whole batch; parameter grads summed over ranks equal the single-process ones."""
    _, dtype, memory_format, _ = worker.CONFIGS[name]
    ranks = [r[name] for r in distributed_results]
    plain, eager, steps = single_process(name)
    for i in range(worker.STEPS):
        out = torch.cat([r["steps"][i]["out"] for r in ranks])
        grad = torch.cat([r["steps"][i]["grad"] for r in ranks])
        for key in ("plain", "eager"):
            ref = steps[key][i]
            assert_close(out.to(ref["out"].dtype), ref["out"], dtype, msg=f"{key} output, step {i}")
            assert_close(grad.to(ref["grad"].dtype), ref["grad"], dtype, factor=2, msg=f"{key} input grad, step {i}")
    for param, key in ((plain.weight, "weight_grad"), (plain.bias, "bias_grad")):
        if param is None:
            assert all(r[key] is None for r in ranks)
            continue
        summed = sum(r[key] for r in ranks)
        assert_close(summed, param.grad, dtype, factor=4, msg=key)
        assert_close(summed.to(eager[0].weight.dtype), getattr(eager[0], key.split("_")[0]).grad, dtype, factor=4)
    stat = torch.float32 if dtype == torch.bfloat16 else dtype
    for r in ranks:
        assert_close(r["running_mean"], plain.running_mean, stat, msg="running_mean")
        assert_close(r["running_var"], plain.running_var, stat, msg="running_var")
        assert_close(r["running_var"].to(eager[0].running_var.dtype), eager[0].running_var, stat)
        assert r["num_batches_tracked"].item() == plain.num_batches_tracked.item() == worker.STEPS
        assert r["out_is_channels_last"] == (memory_format == torch.channels_last)


@requires_compiled
def test_an_expanded_gradient_is_copied_once_for_both_backward_kernels(distributed_results):
    """sum().backward() hands the synchronized module an expanded gradient: its backward copies it
    into the kernels' layout once, not once in each of its two kernels."""
    assert [r["expanded_gradient_clones"] for r in distributed_results] == [1] * WORLD_SIZE


# ---------------------------------------------------------------- convert_sync_batchnorm


def test_convert_sync_batchnorm_converts_fused_modules():
    """Every BatchNormLeakyReLU2d becomes synchronized with the same weights, buffers, slope,
    inplace flag, mode, dtype and parameter objects; other layers are left alone."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        BatchNormLeakyReLU2d(4, 0.1, inplace=True),
        nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), BatchNormLeakyReLU2d(4, 0.0, eps=1e-3, momentum=None)),
        BatchNormLeakyReLU2d(4, affine=False, track_running_stats=False),
    ).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].running_var.fill_(3.0)
        model[1].num_batches_tracked.fill_(7)
    model[2][2].eval()
    model[1].weight.requires_grad_(False)
    weight = model[1].weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    group = object()  # any process-group handle is kept as given
    converted = convert_sync_batchnorm(model, process_group=group)
    assert converted is model
    assert type(model[0]) is nn.Conv2d and type(model[2][0]) is nn.BatchNorm2d and type(model[2][1]) is nn.ReLU
    for module in (model[1], model[2][2], model[3]):
        assert type(module) is SyncBatchNormLeakyReLU2d
        assert module.process_group is group
    assert (model[1].negative_slope, model[1].inplace) == (0.1, True)
    assert (model[2][2].negative_slope, model[2][2].eps, model[2][2].momentum) == (0.0, 1e-3, None)
    assert not model[2][2].training and model[1].training
    assert model[3].running_mean is None and not model[3].affine
    assert model[1].weight is weight and not model[1].weight.requires_grad
    assert model[1].weight.dtype == model[1].running_mean.dtype == torch.float64
    after = model.state_dict()
    assert list(after) == list(before)
    for key in before:
        assert torch.equal(after[key], before[key]), key


def test_convert_sync_batchnorm_can_include_plain_batchnorm():
    """include_batchnorm2d=True turns nn.BatchNorm2d into the synchronized module with an identity
    activation: the same state objects and, outside a process group, BatchNorm2d's exact results."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(4, eps=1e-3, momentum=0.3), nn.PReLU(), BatchNormLeakyReLU2d(4),
                          nn.SyncBatchNorm(4))
    reference = nn.Sequential(nn.BatchNorm2d(4, eps=1e-3, momentum=0.3))
    reference.load_state_dict(model[:1].state_dict())
    with torch.no_grad():
        model[0].weight.uniform_(0.5, 1.5)
        model[0].bias.normal_()
        reference[0].weight.copy_(model[0].weight)
        reference[0].bias.copy_(model[0].bias)
    weight = model[0].weight
    assert type(convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4)))[0]) is nn.BatchNorm2d  # off by default
    convert_sync_batchnorm(model, include_batchnorm2d=True)
    assert type(model[0]) is type(model[2]) is SyncBatchNormLeakyReLU2d and type(model[1]) is nn.PReLU
    assert type(model[3]) is nn.SyncBatchNorm  # torch's own is left as it is
    assert (model[0].negative_slope, model[0].eps, model[0].momentum) == (1.0, 1e-3, 0.3)
    assert model[0].weight is weight
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, expected = model[0](x), reference[0](x_ref)
    assert_close(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    assert_close(x.grad, x_ref.grad)
    assert_close(model[0].weight.grad, reference[0].weight.grad)
    assert_close(model[0].running_var, reference[0].running_var)


@pytest.mark.skipif("bias" not in inspect.signature(nn.BatchNorm2d).parameters,
                    reason="this torch's BatchNorm2d has no bias flag")
def test_convert_sync_batchnorm_keeps_a_norm_without_bias_without_bias():
    """Neither a BatchNorm2d(C, bias=False) nor a fused module without bias gains a trainable shift."""
    model = nn.Sequential(nn.BatchNorm2d(4, bias=False), BatchNormLeakyReLU2d(4, bias=False))
    keys = list(model.state_dict())
    convert_sync_batchnorm(model, include_batchnorm2d=True)
    assert type(model[0]) is type(model[1]) is SyncBatchNormLeakyReLU2d
    assert model[0].bias is None and model[1].bias is None
    assert list(model.state_dict()) == keys


def test_convert_sync_batchnorm_top_level_module():
    """A bare BatchNormLeakyReLU2d is returned converted; a synchronized one is left as is."""
    converted = convert_sync_batchnorm(BatchNormLeakyReLU2d(3, 0.3))
    assert type(converted) is SyncBatchNormLeakyReLU2d and converted.negative_slope == 0.3
    assert convert_sync_batchnorm(converted) is converted


def test_torch_convert_sync_batchnorm_leaves_fused_alone():
    """torch's own nn.SyncBatchNorm.convert_sync_batchnorm must not turn the fused module into a
    plain SyncBatchNorm (which would silently drop the activation)."""
    model = nn.Sequential(BatchNormLeakyReLU2d(3), nn.BatchNorm2d(3))
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert type(model[0]) is BatchNormLeakyReLU2d
    assert type(model[1]) is nn.SyncBatchNorm


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_sync_module_without_process_group_is_plain(train):
    """Outside an initialized process group the synchronized module equals the plain one."""
    assert not torch.distributed.is_initialized()
    plain = BatchNormLeakyReLU2d(4, 0.2)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.normal_()
    sync = convert_sync_batchnorm(BatchNormLeakyReLU2d(4, 0.2))
    sync.load_state_dict(plain.state_dict())
    plain.train(train)
    sync.train(train)
    for _ in range(2):
        x = torch.randn(3, 4, 5, 5)
        g = torch.randn(3, 4, 5, 5)
        outs = []
        for module in (plain, sync):
            xx = x.clone().requires_grad_()
            out = module(xx)
            out.backward(g)
            outs.append((out, xx.grad))
        assert_close(outs[1][0], outs[0][0])
        assert_close(outs[1][1], outs[0][1])
    assert_close(sync.weight.grad, plain.weight.grad)
    assert_close(sync.running_var, plain.running_var)
    assert sync.num_batches_tracked.item() == plain.num_batches_tracked.item()
