"""fuse_bn_act: BatchNorm2d -> LeakyReLU/ReLU pairs in stock models become the fused module,
with nothing observable changing except speed."""
from __future__ import annotations

import copy
import inspect
import warnings

import pytest
import torch
from torch import nn

from fastgan.nn import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, fuse_bn_act

from conftest import assert_close
from reference_nets import reference_patchgan_layers


def pix2pix_discriminator(in_channels=6, ndf=8, n_layers=3):
    """The 70x70 PatchGAN (pix2pix's NLayerDiscriminator with batch norm), from stock layers."""
    return nn.Sequential(*reference_patchgan_layers(in_channels, ndf, n_layers))


def dcgan_generator(nz=8, ngf=4):
    """DCGAN's generator: ConvTranspose -> BN -> ReLU blocks, Tanh output."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, 3, 4, 2, 1, bias=False), nn.Tanh())


class Mixed(nn.Module):
    """Pairs in a Sequential (fusable), a pair used from forward() (invisible), nested Sequentials."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1))
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.body = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU()),  # fused (nested)
            nn.BatchNorm2d(4),  # followed by a conv: not fused
            nn.Conv2d(4, 4, 1),
            nn.ReLU(),  # preceded by a conv: not fused
            nn.BatchNorm2d(4, affine=False), nn.LeakyReLU(0.3),  # fused, no affine
            nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(),  # fused, batch stats always
            nn.BatchNorm2d(4, momentum=None), nn.LeakyReLU(0.05),  # fused, cumulative average
        )

    def forward(self, x):
        return self.body(self.act(self.bn(self.stem(x))))


def randomize_norms(model):
    torch.manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return model


def run(model, x, train):
    """Two forward/backward steps; returns outputs, input grads, param grads, state."""
    model.train(train)
    outs = []
    for i in range(2):
        xx = (x + i).clone().requires_grad_()
        out = model(xx)
        out.backward(torch.ones_like(out) + out.detach())
        outs.append((out.detach(), xx.grad))
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return outs, grads, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_behaviour(original, fused, x, train):
    a, b = run(original, x, train), run(fused, x, train)
    for (o1, g1), (o2, g2) in zip(a[0], b[0]):
        assert_close(o2, o1, factor=5, msg="output")
        assert_close(g2, g1, factor=5, msg="input grad")
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        assert_close(b[1][key], a[1][key], factor=10, msg=f"grad of {key}")
    assert list(a[2]) == list(b[2])
    for key in a[2]:
        if a[2][key].dtype == torch.long:
            assert torch.equal(b[2][key], a[2][key]), key
        else:
            assert_close(b[2][key], a[2][key], factor=5, msg=key)


CASES = {
    "pix2pix_D": (pix2pix_discriminator, (2, 6, 32, 32), 3),
    "dcgan_G": (dcgan_generator, (4, 8, 1, 1), 2),
    "mixed": (Mixed, (2, 3, 8, 8), 5),
}


@pytest.mark.parametrize("inplace", [False, True], ids=["plain", "inplace"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", list(CASES))
def test_fuse_preserves_behaviour(case, train, inplace):
    """Fused count, module types, state_dict keys, outputs and all gradients equal the stock model's."""
    build, shape, expected = CASES[case]
    original = randomize_norms(build())
    original.train()
    for _ in range(2):  # non-default running statistics before fusing
        original(torch.randn(shape))
    model = copy.deepcopy(original)
    keys = list(model.state_dict())
    assert fuse_bn_act(model, inplace=inplace) == expected
    assert list(model.state_dict()) == keys
    fused = [m for m in model.modules() if isinstance(m, BatchNormLeakyReLU2d)]
    assert len(fused) == expected
    # inplace needs slope > 0: fused ReLU pairs stay out-of-place.
    assert all(m.inplace == (inplace and m.negative_slope > 0) for m in fused)
    assert any(m.inplace for m in fused) == (inplace and case != "dcgan_G")
    assert not any(type(m) in (nn.LeakyReLU, nn.ReLU) and prev is not None and type(prev) is nn.BatchNorm2d
                   for seq in model.modules() if isinstance(seq, nn.Sequential)
                   for prev, m in zip(list(seq)[:-1], list(seq)[1:]))
    assert_same_behaviour(original, model, torch.randn(shape), train)


def test_fuse_mixed_structure():
    """Exactly the adjacent Sequential pairs are fused, with their slopes and options."""
    model = Mixed()
    fuse_bn_act(model)
    assert type(model.stem[1]) is BatchNormLeakyReLU2d and model.stem[1].negative_slope == 0.1
    assert type(model.stem[2]) is nn.Identity
    assert type(model.bn) is nn.BatchNorm2d and type(model.act) is nn.ReLU  # called from forward()
    body = model.body
    assert type(body[0][1]) is BatchNormLeakyReLU2d and body[0][1].negative_slope == 0.0
    assert type(body[1]) is nn.BatchNorm2d and type(body[3]) is nn.ReLU
    assert type(body[4]) is BatchNormLeakyReLU2d and not body[4].affine and body[4].negative_slope == 0.3
    assert type(body[6]) is BatchNormLeakyReLU2d and not body[6].track_running_stats
    assert type(body[8]) is BatchNormLeakyReLU2d and body[8].momentum is None


def test_fuse_is_idempotent():
    """A second fuse finds nothing: already-fused modules are not wrapped again."""
    model = pix2pix_discriminator()
    assert fuse_bn_act(model) == 3
    snapshot = [type(m) for m in model.modules()]
    assert fuse_bn_act(model) == 0
    assert [type(m) for m in model.modules()] == snapshot


def test_fuse_leaves_other_norms():
    """BatchNorm1d, BN subclasses and BN before other activations are not fused."""
    class MyBN(nn.BatchNorm2d):
        pass

    model = nn.Sequential(nn.BatchNorm2d(3), nn.Tanh(), MyBN(3), nn.ReLU(), nn.Flatten(),
                          nn.BatchNorm1d(48), nn.ReLU())
    assert fuse_bn_act(model) == 0
    assert [type(m) for m in model] == [nn.BatchNorm2d, nn.Tanh, MyBN, nn.ReLU, nn.Flatten, nn.BatchNorm1d, nn.ReLU]


def test_fuse_keeps_parameters_dtype_and_flags():
    """The fused module reuses the norm's parameter objects: dtype (a .double() model stays double),
    requires_grad (a frozen BN stays frozen) and optimizer references survive."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)).double()
    model[1].bias.requires_grad_(False)
    weight, bias, running_var = model[1].weight, model[1].bias, model[1].running_var
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert fuse_bn_act(model) == 1
    assert model[1].weight is weight and model[1].bias is bias and model[1].running_var is running_var
    assert model[1].weight.dtype == model[1].running_mean.dtype == torch.float64
    assert not model[1].bias.requires_grad
    before = weight.detach().clone()
    model(torch.randn(2, 3, 4, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    assert not torch.equal(model[1].weight, before)  # the optimizer still drives the fused module
    assert bias.grad is None


@pytest.mark.skipif("bias" not in inspect.signature(nn.BatchNorm2d).parameters,
                    reason="this torch's BatchNorm2d has no bias flag")
@pytest.mark.parametrize("norm_type", [nn.BatchNorm2d, nn.SyncBatchNorm], ids=["bn", "syncbn"])
def test_a_norm_without_bias_stays_without_bias(norm_type):
    """BatchNorm2d(C, bias=False) fused must not gain a trainable shift: the same parameters and
    state_dict keys (the checkpoint loads back into the stock model), and the same results."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), norm_type(4, bias=False), nn.LeakyReLU(0.2))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
    original = copy.deepcopy(model)
    assert fuse_bn_act(model) == 1
    assert model[1].bias is None
    assert [name for name, _ in model.named_parameters()] == [name for name, _ in original.named_parameters()]
    original.load_state_dict(model.state_dict(), strict=True)
    assert_same_behaviour(original, model, torch.randn(2, 3, 4, 4), train=True)


def test_inplace_fusion_keeps_norms_with_a_zero_weight_out_of_place():
    """In-place mode divides by the weight to recover its input: a norm with a zero weight (a pruned
    channel) fused in-place turned every gradient into NaN. It is fused out-of-place, with a warning."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                          nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2))
    randomize_norms(model)
    with torch.no_grad():
        model[1].weight[2] = 0.0
    original = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fuse_bn_act(model, inplace=True) == 2
    assert_same_behaviour(original, model, torch.randn(2, 3, 4, 4), train=True)
    assert not model[1].inplace and model[4].inplace
    assert [str(w.message) for w in caught] == [
        "fuse_bn_act fused 1 pair(s) out-of-place, not in-place: 1 (a weight of zero, which in-place mode "
        "would divide by)"]


def test_fuse_sync_batchnorm():
    """SyncBatchNorm -> act pairs become SyncBatchNormLeakyReLU2d with the same process group,
    and behave like the stock pair outside a process group (eval)."""
    group = object()
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.SyncBatchNorm(4, process_group=group), nn.LeakyReLU(0.2),
                          nn.ConvTranspose2d(4, 4, 1), nn.SyncBatchNorm(4), nn.ReLU())
    original = randomize_norms(copy.deepcopy(model))
    model = copy.deepcopy(original)
    group = model[1].process_group
    assert fuse_bn_act(model) == 2
    assert type(model[1]) is SyncBatchNormLeakyReLU2d and model[1].process_group is group
    assert type(model[4]) is SyncBatchNormLeakyReLU2d and model[4].negative_slope == 0.0
    assert list(model.state_dict()) == list(original.state_dict())
    original.eval()
    model.eval()
    x = torch.randn(2, 3, 5, 5)
    assert_close(model(x), original(x))
    # In training, with no process group, the fused module uses the local batch (like BatchNorm2d).
    model.train()
    ref = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.ConvTranspose2d(4, 4, 1),
                        nn.BatchNorm2d(4), nn.ReLU())
    ref.load_state_dict(original.state_dict())
    assert_close(model(x), ref(x))


def _unchanged_by_fuse(model, x, expected_warning):
    reference = copy.deepcopy(model)
    with pytest.warns(UserWarning, match=expected_warning):
        assert fuse_bn_act(model) == 0
    assert_close(model(x), reference(x))


def test_sync_batchnorm_of_another_rank_is_not_fused():
    """torch's convert_sync_batchnorm also turns BatchNorm1d/3d into SyncBatchNorm, whose input rank
    fuse cannot know: only one right after a 2-D convolution is fused."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(
        nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.LeakyReLU(0.2))).eval()
    _unchanged_by_fuse(model, torch.randn(3, 5), r"left 1 pair\(s\) unfused: 1 \(a SyncBatchNorm may stand for")


class TwiceUsed(nn.Sequential):
    def forward(self, x):
        return self[1](self[0](x)) + self[0](x)


def test_a_sequential_with_its_own_forward_is_not_fused():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), TwiceUsed(nn.BatchNorm2d(4), nn.LeakyReLU(0.2)))
    _unchanged_by_fuse(randomize_norms(model), torch.randn(2, 3, 4, 4),
                       r"1\.0 \(TwiceUsed has its own forward\(\)")


def test_layers_with_hooks_are_not_fused():
    model = randomize_norms(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()))
    seen = []
    model[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    _unchanged_by_fuse(model, torch.randn(2, 3, 4, 4), r"1 \(a hook is registered on the norm or the activation\)")
    assert len(seen) == 2  # the hook still runs


def test_a_norm_held_under_two_names_is_not_fused():
    """self.bn also placed in self.body: swapping the body's slot would leave self.bn a stale module."""
    class Aliased(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.body = nn.Sequential(nn.Conv2d(3, 4, 1), self.bn, nn.ReLU())

        def forward(self, x):
            return self.body(x)

    model = Aliased()
    _unchanged_by_fuse(model, torch.randn(2, 3, 4, 4), r"body\.1 \(the norm is also held under another name\)")
    assert model.bn is model.body[1]


def test_a_shared_activation_and_a_shared_sequential_are_still_fused():
    """Swapping a slot of a Sequential held twice changes it for both holders alike, and an activation
    instance used elsewhere too keeps working there."""
    act = nn.ReLU()
    block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), act)
    model = randomize_norms(nn.Sequential(nn.Conv2d(3, 4, 1), block, block, act))
    reference = copy.deepcopy(model)
    assert fuse_bn_act(model) == 1
    x = torch.randn(2, 3, 4, 4)
    assert_close(model(x), reference(x))
