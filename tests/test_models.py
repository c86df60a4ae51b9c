"""fastgan.models: the architectures' sizes, shapes and receptive fields, fused == stock,
half precision, initialization, the registry and the error messages."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastgan.models import (IMAGE_SIZES, MODELS, PATCH_SIZES, ConditionalDiscriminator, ConditionalGenerator,
                            DCGANDiscriminator, DCGANGenerator, PatchDiscriminator, UNetGenerator, build_model,
                            class_grid_labels, init_weights_)
from fastgan.nn import BatchNormLeakyReLU2d

from conftest import assert_close
from reference_nets import randomize_bn_state


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- sizes of the reference settings


@pytest.mark.parametrize("build, expected", [
    (UNetGenerator, 54_413_955),
    (PatchDiscriminator, 2_768_705),
    (DCGANGenerator, 3_576_704),
    (DCGANDiscriminator, 2_765_568),
], ids=["unet_256", "patchgan_70", "dcgan_G", "dcgan_D"])
def test_reference_parameter_counts(build, expected):
    """pix2pix paper (3+3 channel D, batch norm) and pytorch/examples dcgan at 64x64."""
    with torch.device("meta"):
        assert count_parameters(build()) == expected


def test_unet_128_parameter_count():
    """unet_128 is unet_256 less one ngf*8 level: a 512->512 conv, a 1024->512 up-conv and two 512-wide norms."""
    level = 512 * 512 * 16 + 1024 * 512 * 16 + 2 * 2 * 512
    with torch.device("meta"):
        assert count_parameters(UNetGenerator(num_downs=7)) == 54_413_955 - level == 41_828_995


@pytest.mark.parametrize("num_downs, size, in_ch, out_ch", [(7, 128, 3, 3), (8, 256, 1, 2)])
def test_unet_shapes(num_downs, size, in_ch, out_ch):
    model = UNetGenerator(in_ch, out_ch, num_downs=num_downs, ngf=4)
    x = torch.randn(2, in_ch, size, size)
    out = model(x)
    assert out.shape == (2, out_ch, size, size)
    assert out.abs().max() <= 1  # tanh
    rectangular = model.eval()(torch.randn(1, in_ch, size, 2 * size))
    assert rectangular.shape == (1, out_ch, size, 2 * size)


def test_unet_dropout_placement():
    """Dropout(0.5) in the num_downs - 5 ngf*8 decoder stages next to the innermost one, nowhere else."""
    for num_downs in (5, 7, 8):
        model = UNetGenerator(num_downs=num_downs, ngf=4)
        with_dropout = [k for k, stage in enumerate(model.decoder) if any(isinstance(m, nn.Dropout) for m in stage)]
        assert with_dropout == list(range(4, num_downs - 1))
        assert all(m.p == 0.5 for m in model.modules() if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout) for m in UNetGenerator(ngf=4, dropout=False).modules())


def test_unet_bias_only_without_batch_norm():
    """Convs in front of BatchNorm carry no bias; the outermost up-conv always does."""
    batch = UNetGenerator(num_downs=5, ngf=4)
    convs = [m for m in batch.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m for m in convs if m.bias is not None] == [batch.decoder[0][0]]
    for norm in ("instance", "none"):
        model = UNetGenerator(num_downs=5, ngf=4, norm=norm)
        assert all(m.bias is not None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


@pytest.mark.parametrize("p", list(PATCH_SIZES))
def test_patch_discriminator_shapes(p):
    model = PatchDiscriminator.for_patch_size(p, ndf=4)
    n_layers = PATCH_SIZES[p]
    expected = 256 if n_layers == 0 else 256 // 2 ** n_layers - 2
    assert model(torch.randn(2, 6, 256, 256)).shape == (2, 1, expected, expected)
    assert model.receptive_field == p


def patch_input_gradient(model: nn.Module, size: int) -> torch.Tensor:
    """|d out[center] / d input| with positive weights and eval-mode norms: nothing can cancel."""
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.uniform_(0.5, 1.0).div_(m.weight[0].numel())
    x = torch.randn(1, model.model[0].in_channels, size, size, dtype=torch.float64, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    return x.grad[0].abs().sum(0)


@pytest.mark.parametrize("p", list(PATCH_SIZES))
def test_receptive_field_numerically(p):
    """The central logit depends on exactly a p x p window of the input, every pixel of it."""
    grad = patch_input_gradient(PatchDiscriminator.for_patch_size(p, in_ch=1, ndf=2), size=320)
    rows, cols = grad.nonzero(as_tuple=True)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert (bottom - top + 1, right - left + 1) == (p, p)
    assert top > 0 and left > 0 and bottom < 319 and right < 319  # not clipped by the border
    assert bool((grad[top:bottom + 1, left:right + 1] > 0).all())


@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_dcgan_shapes(image_size):
    G = DCGANGenerator(nz=16, ngf=4, image_size=image_size)
    D = DCGANDiscriminator(ndf=4, image_size=image_size)
    z = torch.randn(3, 16)
    images = G(z)
    assert images.shape == (3, 3, image_size, image_size)
    assert torch.equal(G.eval()(z.view(3, 16, 1, 1)), G(z))
    assert D(images).shape == (3,)
    stages = image_size.bit_length() - 3
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules()) == stages + 1
    assert sum(isinstance(m, nn.Conv2d) for m in D.modules()) == stages + 1


def test_dcgan_grayscale_32():
    """Fashion-MNIST padded to 32x32: one channel in and out."""
    G, D = DCGANGenerator(nz=8, ngf=4, out_ch=1, image_size=32), DCGANDiscriminator(in_ch=1, ndf=4, image_size=32)
    images = G(torch.randn(2, 8))
    assert images.shape == (2, 1, 32, 32)
    assert D(images).shape == (2,)


def test_dcgan_batch_norm_layout_matches_pytorch_examples():
    """Batch norm everywhere but G's output and D's input layer, no conv biases, ReLU in G, LeakyReLU 0.2 in D."""
    G, D = DCGANGenerator(fused=False), DCGANDiscriminator(fused=False)
    assert [type(m).__name__ for m in G.main][-2:] == ["ConvTranspose2d", "Tanh"]
    assert [type(m).__name__ for m in D.main][:2] == ["Conv2d", "LeakyReLU"]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    assert all(m.bias is None for m in [*G.modules(), *D.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    assert {m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    assert list(G.state_dict())[:2] == ["main.0.weight", "main.1.weight"]


@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_conditional_shapes(image_size):
    G = ConditionalGenerator(10, nz=8, ngf=4, image_size=image_size, embed_dim=6)
    D = ConditionalDiscriminator(10, ndf=4, image_size=image_size)
    labels = torch.tensor([0, 9, 3])
    images = G(torch.randn(3, 8), labels)
    assert images.shape == (3, 3, image_size, image_size)
    assert D(images, labels).shape == (3,)
    assert D.net.main[0].in_channels == 4  # image + label map


def test_conditional_output_depends_on_label():
    G, D = ConditionalGenerator(4, nz=8, ngf=4, image_size=32).eval(), ConditionalDiscriminator(4, ndf=4,
                                                                                                 image_size=32).eval()
    z, images = torch.randn(1, 8).repeat(2, 1), torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)
    labels = torch.tensor([1, 2])
    fake = G(z, labels)
    assert not torch.allclose(fake[0], fake[1])
    logits = D(images, labels)
    assert logits[0] != logits[1]


def test_class_grid_labels():
    assert class_grid_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    assert class_grid_labels(3, 2).dtype == torch.long
    with pytest.raises(ValueError, match="per_class must be a positive integer, got 0"):
        class_grid_labels(3, 0)


# ---------------------------------------------------------------- fused == stock

LABELS = torch.tensor([0, 4, 2])
SMALL_MODELS = {
    "unet": (lambda **kw: UNetGenerator(num_downs=6, ngf=4, **kw), lambda: (torch.randn(2, 3, 64, 64),)),
    "patchgan_70": (lambda **kw: PatchDiscriminator(ndf=4, **kw), lambda: (torch.randn(2, 6, 64, 64),)),
    "pixelgan": (lambda **kw: PatchDiscriminator.for_patch_size(1, ndf=4, **kw), lambda: (torch.randn(2, 6, 8, 8),)),
    "dcgan_G": (lambda **kw: DCGANGenerator(nz=8, ngf=4, image_size=32, **kw), lambda: (torch.randn(3, 8),)),
    "dcgan_D": (lambda **kw: DCGANDiscriminator(ndf=4, image_size=32, **kw), lambda: (torch.randn(3, 3, 32, 32),)),
    "cond_G": (lambda **kw: ConditionalGenerator(5, nz=8, ngf=4, image_size=32, **kw),
               lambda: (torch.randn(3, 8), LABELS)),
    "cond_D": (lambda **kw: ConditionalDiscriminator(5, ndf=4, image_size=32, **kw),
               lambda: (torch.randn(3, 3, 32, 32), LABELS)),
}
# (fused with slope 0.2, fused with slope 0) per model
FUSED_PAIRS = {"unet": (4, 5), "patchgan_70": (3, 0), "pixelgan": (1, 0), "dcgan_G": (0, 3), "dcgan_D": (2, 0),
               "cond_G": (0, 3), "cond_D": (2, 0)}


def forward_backward(model, inputs, seed=1):
    inputs = [x.clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    torch.manual_seed(seed)  # the same dropout masks for both models
    out = model(*inputs)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return out.detach(), [x.grad for x in inputs if x.is_floating_point()], grads


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_fused_equals_stock(name):
    """A stock checkpoint loads strictly into the fused model: same outputs, input and parameter gradients
    and running statistics, in train and eval mode."""
    build, make_inputs = SMALL_MODELS[name]
    stock = build(fused=False)
    randomize_bn_state(stock)
    fused = build()
    assert not any(isinstance(m, BatchNormLeakyReLU2d) for m in stock.modules())
    slopes = [m.negative_slope for m in fused.modules() if isinstance(m, BatchNormLeakyReLU2d)]
    assert (slopes.count(0.2), slopes.count(0.0)) == FUSED_PAIRS[name]
    fused.load_state_dict(stock.state_dict(), strict=True)
    assert list(fused.state_dict()) == list(stock.state_dict())

    inputs = make_inputs()
    for train in (True, False):
        stock.train(train)
        fused.train(train)
        out_s, input_grads_s, grads_s = forward_backward(stock, inputs)
        out_f, input_grads_f, grads_f = forward_backward(fused, inputs)
        assert_close(out_f, out_s, msg=f"output (train={train})")
        for grad_f, grad_s in zip(input_grads_f, input_grads_s):
            assert_close(grad_f, grad_s, factor=5, msg=f"input grad (train={train})")
        for key in grads_s:
            assert_close(grads_f[key], grads_s[key], factor=10, msg=f"grad of {key} (train={train})")
        fused_state = fused.state_dict()
        for key, value in stock.state_dict().items():
            if value.is_floating_point():
                assert_close(fused_state[key], value, msg=key)
            else:
                assert torch.equal(fused_state[key], value), key


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_bf16_forward_backward(name):
    build, make_inputs = SMALL_MODELS[name]
    model = build().to(torch.bfloat16)
    inputs = [x.to(torch.bfloat16).requires_grad_() if x.is_floating_point() else x for x in make_inputs()]
    out = model(*inputs)
    assert out.dtype == torch.bfloat16 and bool(out.isfinite().all())
    out.float().square().mean().backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), param_name
    assert bool(inputs[0].grad.isfinite().all()) and inputs[0].grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_other_norms_run(norm):
    unet = UNetGenerator(num_downs=5, ngf=4, norm=norm)
    assert unet(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    D = PatchDiscriminator(ndf=4, norm=norm)
    assert D(torch.randn(1, 6, 64, 64)).shape == (1, 1, 6, 6)
    G = DCGANGenerator(nz=8, ngf=4, image_size=32, norm=norm)
    assert DCGANDiscriminator(ndf=4, image_size=32, norm=norm)(G(torch.randn(2, 8))).shape == (2,)
    expected = nn.InstanceNorm2d if norm == "instance" else nn.Identity
    assert type(unet.encoder[1][1]) is expected and type(D.model[3]) is expected
    assert not any(isinstance(m, (nn.BatchNorm2d, BatchNormLeakyReLU2d)) for m in [*unet.modules(), *D.modules()])


# ---------------------------------------------------------------- initialization


def test_init_weights_statistics():
    model = nn.Sequential(nn.Conv2d(64, 256, 4, bias=True), nn.BatchNorm2d(4096), nn.ConvTranspose2d(64, 64, 4),
                          BatchNormLeakyReLU2d(4096), nn.InstanceNorm2d(8))
    assert init_weights_(model, std=0.05) is model
    for conv in (model[0], model[2]):
        assert abs(conv.weight.mean().item()) < 2e-3
        assert conv.weight.std().item() == pytest.approx(0.05, rel=0.02)
        assert torch.count_nonzero(conv.bias) == 0
    for norm in (model[1], model[3]):
        assert norm.weight.mean().item() == pytest.approx(1.0, abs=5e-3)
        assert norm.weight.std().item() == pytest.approx(0.05, rel=0.1)
        assert torch.count_nonzero(norm.bias) == 0


def test_models_are_initialized():
    """Every family applies N(0, 0.02) to its convs in __init__ (PyTorch's default would be far wider)."""
    for model in (UNetGenerator(num_downs=5, ngf=16), PatchDiscriminator(ndf=16), DCGANGenerator(ngf=16),
                  ConditionalDiscriminator(3, ndf=16)):
        weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (nn.Conv2d,
                                                                                          nn.ConvTranspose2d))])
        assert weights.std().item() == pytest.approx(0.02, rel=0.05), type(model).__name__


# ---------------------------------------------------------------- registry


def test_registry_lists_every_family():
    from fastgan.models import (MatchingAwareDiscriminator, SRGANDiscriminator, SRResNetGenerator,
                                TextConditionedGenerator, level_discriminator, level_generator)
    sr = {"G": SRResNetGenerator, "D": SRGANDiscriminator}
    assert MODELS == {"pix2pix": {"G": UNetGenerator, "D": PatchDiscriminator},
                      "dcgan": {"G": DCGANGenerator, "D": DCGANDiscriminator},
                      "conditional": {"G": ConditionalGenerator, "D": ConditionalDiscriminator},
                      "srresnet": sr, "srgan": sr,
                      "gancls": {"G": TextConditionedGenerator, "D": MatchingAwareDiscriminator},
                      "lapgan": {"G": level_generator, "D": level_discriminator}}


def test_build_model_rebuilds_a_checkpoint():
    """The trainer's checkpoint layout: build_model(family, role, **model_args[role]) + load_state_dict."""
    model_args = {"G": {"num_classes": 4, "nz": 8, "ngf": 4, "image_size": 32},
                  "D": {"num_classes": 4, "ndf": 4, "image_size": 32, "fused": False}}
    trained = {role: build_model("conditional", role, **kwargs) for role, kwargs in model_args.items()}
    checkpoint = {"format_version": 1, "family": "conditional", "model_args": model_args,
                  "models": {role: model.state_dict() for role, model in trained.items()}}
    for role, state in checkpoint["models"].items():
        rebuilt = build_model(checkpoint["family"], role, **checkpoint["model_args"][role])
        rebuilt.load_state_dict(state, strict=True)
        assert type(rebuilt) is type(trained[role])
        for key, value in trained[role].state_dict().items():
            assert torch.equal(rebuilt.state_dict()[key], value), key


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model family 'cyclegan'; valid families: pix2pix, dcgan, "
                                         "conditional, srresnet, srgan"):
        build_model("cyclegan", "G")
    with pytest.raises(ValueError, match="unknown role 'E' for family 'dcgan'; valid roles: G, D"):
        build_model("dcgan", "E")


# ---------------------------------------------------------------- errors


def test_unet_size_errors():
    model = UNetGenerator(num_downs=5, ngf=4)
    with pytest.raises(ValueError, match=r"num_downs=5 .* divisible by 2\*\*5 = 32; got size \(1, 3, 48, 64\)"):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match=r"num_downs must be an integer >= 5 .* got 4"):
        UNetGenerator(num_downs=4)


def test_norm_and_size_argument_errors():
    with pytest.raises(ValueError, match="norm must be one of batch, instance, layer, none; got 'group'"):
        UNetGenerator(norm="group")
    with pytest.raises(ValueError, match="norm must be one of batch, instance, layer, none; got 'Layer'"):
        DCGANDiscriminator(norm="Layer")
    with pytest.raises(ValueError, match="ngf must be a positive integer, got 0"):
        DCGANGenerator(ngf=0)
    with pytest.raises(ValueError, match=r"n_layers must be an integer >= 0 \(0 = PixelGAN\), got -1"):
        PatchDiscriminator(n_layers=-1)


def test_patch_size_error_lists_valid_sizes():
    with pytest.raises(ValueError, match="patch size must be one of 1, 16, 34, 70, 142, 286; got 64"):
        PatchDiscriminator.for_patch_size(64)


@pytest.mark.parametrize("build", [DCGANGenerator, DCGANDiscriminator,
                                   lambda image_size: ConditionalGenerator(3, image_size=image_size),
                                   lambda image_size: ConditionalDiscriminator(3, image_size=image_size)])
def test_image_size_error_lists_valid_sizes(build):
    with pytest.raises(ValueError, match="image_size must be one of 32, 64, 128; got 48"):
        build(image_size=48)


def test_dcgan_input_shape_errors():
    G, D = DCGANGenerator(nz=8, ngf=4, image_size=32), DCGANDiscriminator(ndf=4, image_size=32)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 8\] or \[N, 8, 1, 1\]; got \(2, 8, 2, 2\)"):
        G(torch.randn(2, 8, 2, 2))
    with pytest.raises(ValueError, match=r"z must have shape \[N, 8\] .* got \(2, 9\)"):
        G(torch.randn(2, 9))
    with pytest.raises(ValueError, match=r"images must have shape \[N, 3, 32, 32\]; got \(2, 3, 64, 64\)"):
        D(torch.randn(2, 3, 64, 64))


def test_label_errors():
    G, D = ConditionalGenerator(5, nz=8, ngf=4, image_size=32), ConditionalDiscriminator(5, ndf=4, image_size=32)
    z, images = torch.randn(3, 8), torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\); got 7"):
        G(z, torch.tensor([1, 7, 2]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\); got -1"):
        D(images, torch.tensor([1, 2, -1]))
    with pytest.raises(ValueError, match=r"labels must have shape \[3\] \(one per sample\); got \(2,\)"):
        G(z, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="labels must be an integer tensor; got dtype torch.float32"):
        D(images, torch.tensor([1.0, 2.0, 3.0]))


def test_label_values_are_checked_only_where_reading_them_is_free():
    """On a CPU tensor the value check costs nothing; on any other device it would be a host sync in
    every forward, so only shape and dtype are checked there (a meta tensor stands in: its values
    cannot be read at all, so a value check would raise)."""
    from fastgan.models.conditional import check_labels

    check_labels(torch.zeros(3, dtype=torch.long, device="meta"), 5, 3)
    with pytest.raises(ValueError, match=r"labels must have shape \[3\]"):
        check_labels(torch.zeros(2, dtype=torch.long, device="meta"), 5, 3)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 5\); got 5"):
        check_labels(torch.tensor([0, 5, 1]), 5, 3)


@pytest.mark.parametrize("family", ["pix2pix", "dcgan", "conditional", "srgan", "gancls"])
@pytest.mark.parametrize("norm, layer", [("none", None), ("instance", nn.InstanceNorm2d), ("layer", nn.GroupNorm),
                                         ("batch", BatchNormLeakyReLU2d)])
def test_model_norm_reaches_both_networks(family, norm, layer):
    """--model.norm builds every family's networks with that norm: no family drops it silently."""
    from fastgan.config import parse_config
    from fastgan.families import build_family
    from fastgan.models import batch_normalized
    args = ["--model.family", family, "--model.norm", norm, "--model.ngf", "8", "--model.ndf", "8"]
    if family not in ("pix2pix", "srgan"):
        dataset = "classes" if family == "conditional" else "folder"
        args += ["--data.dataset", dataset, "--data.root", "unused", "--data.crop_size", "32"]
    models = build_family(parse_config(args)).models
    for role, model in models.items():
        assert batch_normalized(model) == (norm == "batch"), role
        if layer is not None and not (family == "srgan" and role == "G" and norm == "batch"):
            assert any(isinstance(m, layer) for m in model.modules()), (role, norm)


@pytest.mark.parametrize("family", ["pix2pix", "dcgan", "conditional", "srgan", "gancls", "lapgan"])
def test_d_norm_sets_the_discriminator_alone(family):
    """--model.d_norm none: a critic without batch norm beside a batch-normalized generator."""
    from fastgan.config import parse_config
    from fastgan.families import build_family
    from fastgan.models import batch_normalized
    args = ["--model.family", family, "--model.d_norm", "none", "--model.ngf", "8", "--model.ndf", "8"]
    if family in ("dcgan", "conditional", "gancls"):
        dataset = "classes" if family == "conditional" else "folder"
        args += ["--data.dataset", dataset, "--data.root", "unused", "--data.crop_size", "32"]
    if family == "lapgan":
        args += ["--model.level", "1", "--data.crop_size", "32", "--model.levels", "2"]
    family_ = build_family(parse_config(args))
    assert batch_normalized(family_.models["G"]) and not batch_normalized(family_.models["D"])
    assert family_.model_args["D"]["norm"] == "none" and family_.model_args["G"]["norm"] == "batch"
    same = build_family(parse_config([a for a in args if a not in ("--model.d_norm", "none")]))
    assert batch_normalized(same.models["D"]), "d_norm same = model.norm"


@pytest.mark.parametrize("norm", ["layer", "instance", "none"])
def test_per_sample_norms_keep_each_samples_score_its_own(norm):
    """A critic with layer, instance or no norm scores each sample independently of the rest of the
    batch in training mode (what a per-sample gradient penalty assumes); batch norm does not."""
    torch.manual_seed(0)
    D = PatchDiscriminator(in_ch=3, ndf=8, n_layers=2, norm=norm).train()
    x = torch.randn(4, 3, 32, 32)
    other = torch.cat([x[:1], torch.randn(3, 3, 32, 32)])
    assert_close(D(x)[:1], D(other)[:1])
    batch = PatchDiscriminator(in_ch=3, ndf=8, n_layers=2, norm="batch").train()
    assert not torch.allclose(batch(x)[:1], batch(other)[:1])
