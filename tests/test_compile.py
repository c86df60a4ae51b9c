"""torch.compile of models built on the fused layers: whole graphs, same numbers as eager.

The operators are real torch.ops with fakes and autograd formulas precisely so that
torch.compile(fullgraph=True) can trace through them; a graph break or a fake that
disagrees with the kernel would show up here.
"""
from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from fastgan.nn import BatchNormLeakyReLU2d, PatchGANLoss

from conftest import assert_close


class TinyPatchD(nn.Module):
    """Conv -> BN+LeakyReLU(0.2) -> Conv -> BN+ReLU -> 1-channel logit map."""

    def __init__(self, inplace=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = BatchNormLeakyReLU2d(8, 0.2, inplace=inplace)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.act2 = BatchNormLeakyReLU2d(8, 0.0)
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.act2(self.conv2(self.act1(self.conv1(x)))))


def d_step(model, loss_fn, real, fake):
    """One discriminator + generator objective, as a training loop computes them."""
    d_loss = loss_fn.discriminator(model(real), model(fake))
    g_loss = loss_fn.generator(model(fake))
    return d_loss + 0.5 * g_loss


def train(model, fn, batches, steps=3):
    """A few SGD steps; returns losses, input grads and the final parameters/buffers."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses, grads = [], []
    for real, fake in batches[:steps]:
        fake = fake.detach().clone().requires_grad_()
        opt.zero_grad()
        loss = fn(real, fake)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        grads.append(fake.grad)
    return losses, grads, {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_batches(memory_format=torch.contiguous_format, count=3, batch=4, size=16):
    return [(torch.randn(batch, 3, size, size).to(memory_format=memory_format),
             torch.randn(batch, 3, size, size).to(memory_format=memory_format)) for _ in range(count)]


def compare_training(backend, memory_format=torch.contiguous_format, mode="vanilla", inplace=False,
                     dynamic=None, batches=None):
    eager_model = TinyPatchD(inplace).to(memory_format=memory_format)
    compiled_model = copy.deepcopy(eager_model)
    loss_fn = PatchGANLoss(mode)
    batches = batches or make_batches(memory_format)
    ref = train(eager_model, lambda r, f: d_step(eager_model, loss_fn, r, f), batches, len(batches))
    compiled = torch.compile(lambda r, f: d_step(compiled_model, loss_fn, r, f), backend=backend,
                             fullgraph=True, dynamic=dynamic)
    got = train(compiled_model, compiled, batches, len(batches))
    for i, (a, b) in enumerate(zip(got[0], ref[0])):
        assert_close(a, b, factor=10, msg=f"loss, step {i}")
    for i, (a, b) in enumerate(zip(got[1], ref[1])):
        assert_close(a, b, factor=10, msg=f"input grad, step {i}")
    assert got[2].keys() == ref[2].keys()
    for key in ref[2]:
        a, b = got[2][key], ref[2][key]
        if b.dtype == torch.long:
            assert torch.equal(a, b), key
        else:
            assert_close(a, b, factor=10, msg=key)


def graph_breaks(fn, *args):
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args)


@pytest.mark.parametrize("memory_format,mode,inplace", [
    (torch.contiguous_format, "vanilla", False),
    (torch.channels_last, "hinge", True),  # inplace: the output is what backward keeps
], ids=["nchw-vanilla", "channels_last-hinge-inplace"])
def test_compiled_training_matches_eager(memory_format, mode, inplace):
    """fullgraph aot_eager training steps (forward+backward+SGD) equal eager's."""
    torch._dynamo.reset()
    compare_training("aot_eager", memory_format, mode, inplace=inplace, batches=make_batches(memory_format, 2))


@pytest.mark.slow
def test_compiled_dynamic_batch():
    """dynamic=True: one graph for several batch sizes; the fakes must handle symbolic shapes."""
    torch._dynamo.reset()
    batches = [(torch.randn(n, 3, 12, 12), torch.randn(n, 3, 12, 12)) for n in (2, 3, 5)]
    compare_training("aot_eager", dynamic=True, batches=batches)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_no_graph_breaks(memory_format):
    """The fused ops and the loss trace as one graph (train and eval)."""
    model = TinyPatchD().to(memory_format=memory_format)
    loss_fn = PatchGANLoss("lsgan", 0.9, 0.1)
    real, fake = make_batches(memory_format, count=1)[0]
    explanation = graph_breaks(lambda r, f: d_step(model, loss_fn, r, f), real, fake)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    model.eval()
    explanation = graph_breaks(lambda r: model(r), real)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.parametrize("train_mode", [True, False], ids=["train", "eval"])
def test_compiled_channels_last_layout(train_mode):
    """A compiled fused layer on channels_last input returns channels_last (what eager BN does)."""
    torch._dynamo.reset()
    layer = BatchNormLeakyReLU2d(8).train(train_mode)
    x = torch.randn(4, 8, 6, 6).to(memory_format=torch.channels_last)
    expected = copy.deepcopy(layer)(x)
    out = torch.compile(layer, backend="aot_eager", fullgraph=True)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, expected)


@pytest.mark.slow
def test_inductor_training_matches_eager():
    """The default (inductor) backend: compiled training steps equal eager's."""
    torch._dynamo.reset()
    start = time.perf_counter()
    compare_training("inductor")
    print(f"inductor compile + 3 steps: {time.perf_counter() - start:.1f} s")
