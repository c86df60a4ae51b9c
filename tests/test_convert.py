"""fastgan.convert: reference pix2pix checkpoints become ours and compute the same function.

The reference networks are re-created here from the reference implementation's structure
(junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py): nested skip blocks whose
in-place activations rewrite the skip tensors, with its `model.model.1.model...` keys.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fastgan import evaluate, sample, translate
from fastgan.convert import ConversionError, convert_pix2pix_reference, main, reference_unet_module_map
from fastgan.data.transforms import resize_center_crop, to_tensor
from fastgan.models import PatchDiscriminator, UNetGenerator, build_model
from fastgan.visualize import to_uint8

from conftest import assert_close
from reference_nets import randomize_bn_state, reference_patchgan_layers


class ReferenceSkipBlock(nn.Module):
    """One U-Net level as the reference writes it: [down | inner block | up], output cat([x, model(x)])."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 use_dropout=False):
        super().__init__()
        self.outermost = outermost
        down_conv = nn.Conv2d(outer_nc if input_nc is None else input_nc, inner_nc, 4, 2, 1, bias=False)
        if outermost:
            layers = [down_conv, submodule, nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1),
                      nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False), nn.BatchNorm2d(outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.BatchNorm2d(inner_nc), submodule, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False), nn.BatchNorm2d(outer_nc)]
            layers += [nn.Dropout(0.5)] if use_dropout else []
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # x has been rewritten by the in-place LeakyReLU by now


class ReferenceUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, use_dropout=True):
        super().__init__()
        block = ReferenceSkipBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = ReferenceSkipBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout)
        block = ReferenceSkipBlock(ngf * 4, ngf * 8, submodule=block)
        block = ReferenceSkipBlock(ngf * 2, ngf * 4, submodule=block)
        block = ReferenceSkipBlock(ngf, ngf * 2, submodule=block)
        self.model = ReferenceSkipBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x):
        return self.model(x)


class ReferencePatchGAN(nn.Module):
    """The reference NLayerDiscriminator: one Sequential `model`."""

    def __init__(self, input_nc, ndf, n_layers):
        super().__init__()
        self.model = nn.Sequential(*reference_patchgan_layers(input_nc, ndf, n_layers))

    def forward(self, x):
        return self.model(x)


def randomize(model: nn.Module) -> nn.Module:
    """Distinct values everywhere, non-trivial BN statistics: any key swapped by the mapping shows."""
    randomize_bn_state(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    return model


def run(model, x, seed=5):
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # same dropout masks
    out = model(x)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), x.grad


def assert_same_step(reference: nn.Module, ours: nn.Module, x: torch.Tensor, train: bool) -> None:
    """One forward and backward of both in `train` mode: equal outputs and input gradients."""
    reference.train(train)
    ours.train(train)
    ref_out, ref_grad = run(reference, x)
    our_out, our_grad = run(ours, x)
    assert_close(our_out, ref_out, msg=f"output (train={train})")
    assert_close(our_grad, ref_grad, factor=5, msg=f"input gradient (train={train})")


def gradients_as_state(model: nn.Module) -> dict:
    """The model's state_dict with each parameter replaced by its gradient, to convert like weights."""
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {key: grads.get(key, value) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("num_downs", [6, 8])
def test_converted_unet_matches_reference(num_downs):
    """Same outputs, input gradients, parameter gradients and updated running stats (train, with dropout),
    and the same outputs in eval mode."""
    size = 2 ** num_downs
    reference = randomize(ReferenceUnet(3, 2, num_downs, ngf=4))
    state, model_args = convert_pix2pix_reference(reference.state_dict(), "G", ngf=4, num_downs=num_downs)
    assert model_args == {"in_ch": 3, "out_ch": 2, "ngf": 4, "num_downs": num_downs, "norm": "batch",
                          "dropout": True}
    ours = UNetGenerator(**model_args)
    ours.load_state_dict(state, strict=True)
    assert sum(isinstance(m, nn.Dropout) for m in ours.modules()) == num_downs - 5

    x = torch.randn(2, 3, size, size)
    for train in (True, False):
        assert_same_step(reference, ours, x, train)
        expected_grads, _ = convert_pix2pix_reference(gradients_as_state(reference), "G", ngf=4, num_downs=num_downs)
        for name, p in ours.named_parameters():
            assert_close(p.grad, expected_grads[name], factor=10, msg=f"grad of {name} (train={train})")
        expected_state, _ = convert_pix2pix_reference(reference.state_dict(), "G", ngf=4, num_downs=num_downs)
        for key, value in ours.state_dict().items():
            assert_close(value.float(), expected_state[key].float(), msg=key)
        reference.zero_grad()
        ours.zero_grad()


def test_unet_module_map_layout():
    """The mapping spelled out for the first levels and the innermost one of unet_256."""
    mapping = reference_unet_module_map(8)
    assert mapping["model.model.0"] == "encoder.0.0"
    assert mapping["model.model.3"] == "decoder.0.0"
    assert mapping["model.model.1.model.1"] == "encoder.1.0"
    assert mapping["model.model.1.model.2"] == "encoder.1.1"
    assert mapping["model.model.1.model.5"] == "decoder.1.0"
    assert mapping["model.model.1.model.6"] == "decoder.1.1"
    assert mapping["model.model.1.model.3.model.1"] == "encoder.2.0"
    assert mapping["model.model.1.model.3.model.3.model.6"] == "decoder.3.1"
    innermost = "model.model.1.model" + ".3.model" * 6
    assert {key: mapping[key] for key in mapping if key.startswith(innermost)} == {
        f"{innermost}.1": "encoder.7.0", f"{innermost}.3": "decoder.7.0", f"{innermost}.4": "decoder.7.1"}
    assert len(mapping) == 2 + 6 * 4 + 3


def test_full_size_unet_keys_convert():
    """unet_256 at ngf 64 (54,413,955 parameters): every key is used and filled, on the meta device."""
    with torch.device("meta"):
        reference = ReferenceUnet(3, 3, 8, 64)
    state, model_args = convert_pix2pix_reference(reference.state_dict(), "G")
    assert model_args == {"in_ch": 3, "out_ch": 3, "ngf": 64, "num_downs": 8, "norm": "batch", "dropout": True}
    assert sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 54_413_955


def test_converted_patchgan_matches_reference():
    reference = randomize(ReferencePatchGAN(6, 4, 3))
    state, model_args = convert_pix2pix_reference(reference.state_dict(), "D", ndf=4)
    assert model_args == {"in_ch": 6, "ndf": 4, "n_layers": 3, "norm": "batch"}
    ours = PatchDiscriminator(**model_args)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 6, 64, 64)
    for train in (True, False):
        assert_same_step(reference, ours, x, train)


def test_converted_pixelgan_matches_reference():
    """The reference's 1x1 PixelDiscriminator keeps its Sequential in `net`; ours in `model` (n_layers=0)."""
    reference = nn.Module()
    reference.net = nn.Sequential(nn.Conv2d(6, 4, 1), nn.LeakyReLU(0.2, True), nn.Conv2d(4, 8, 1, bias=False),
                                  nn.BatchNorm2d(8), nn.LeakyReLU(0.2, True), nn.Conv2d(8, 1, 1, bias=False))
    randomize(reference)
    state, model_args = convert_pix2pix_reference(reference.state_dict(), "D", ndf=4, n_layers=0)
    assert list(state)[:2] == ["model.0.weight", "model.0.bias"]
    ours = PatchDiscriminator(**model_args).eval()
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 6, 8, 8)
    assert_close(ours(x), reference.net.eval()(x))


def test_old_checkpoints_and_data_parallel_prefix():
    """No num_batches_tracked (PyTorch < 0.4.1): filled with 0. A `module.` prefix (DataParallel): stripped."""
    reference = randomize(ReferenceUnet(3, 3, 5, ngf=4))
    old = {f"module.{key}": value for key, value in reference.state_dict().items()
           if not key.endswith("num_batches_tracked")}
    state, _ = convert_pix2pix_reference(old, "G", ngf=4, num_downs=5)
    tracked = [key for key in state if key.endswith("num_batches_tracked")]
    assert len(tracked) == 7  # encoder levels 1-3, decoder levels 1-4
    assert all(state[key].item() == 0 and state[key].dtype == torch.long for key in tracked)
    current, _ = convert_pix2pix_reference(reference.state_dict(), "G", ngf=4, num_downs=5)
    assert all(current[key].item() == 7 for key in tracked)
    assert all(torch.equal(state[key], current[key]) for key in state if key not in tracked)


def test_conversion_errors_list_keys():
    state = randomize(ReferenceUnet(3, 3, 5, ngf=4)).state_dict()
    state["model.model.9.weight"] = torch.zeros(1)
    del state["model.model.1.model.2.running_var"]
    with pytest.raises(ConversionError, match=r"(?s)unexpected keys \(not used\): model\.model\.9\.weight.*"
                                              r"missing keys \(not filled\): encoder\.1\.1\.running_var"):
        convert_pix2pix_reference(state, "G", ngf=4, num_downs=5)
    with pytest.raises(ConversionError, match=r"(?s)shape mismatches: model\.model\.0\.weight \(4, 3, 4, 4\) -> "
                                              r"encoder\.0\.0\.weight \(8, 3, 4, 4\).*check --net and --ngf"):
        convert_pix2pix_reference(ReferenceUnet(3, 3, 5, ngf=4).state_dict(), "G", ngf=8, num_downs=5)
    with pytest.raises(ConversionError, match=r"missing keys \(not filled\): .*encoder\.5\.0\.weight"):
        convert_pix2pix_reference(ReferenceUnet(3, 3, 5, ngf=4).state_dict(), "G", ngf=4, num_downs=6)
    with pytest.raises(ConversionError, match="net must be one of G, D; got 'E'"):
        convert_pix2pix_reference(state, "E")
    with pytest.raises(ConversionError, match="only batch-norm reference checkpoints are supported; got norm='none'"):
        convert_pix2pix_reference(state, "G", norm="none")
    with pytest.raises(ConversionError, match="expected a state_dict .* got list"):
        convert_pix2pix_reference([1, 2], "G")


def test_an_instance_norm_reference_is_named_as_the_cause():
    """The reference's --norm instance model: conv biases, and no BatchNorm weights or statistics."""
    state = ReferenceUnet(3, 3, 5, ngf=4).state_dict()
    norms = {k.rsplit(".", 1)[0] for k in state if k.endswith("running_mean")}
    state = {k: v for k, v in state.items() if k.rsplit(".", 1)[0] not in norms}
    for key, value in list(state.items()):
        bias = key[:-len("weight")] + "bias"
        if key.endswith(".weight") and value.dim() == 4 and bias not in state:
            state[bias] = torch.zeros(value.shape[0])
    with pytest.raises(ConversionError, match="the reference was trained with --norm instance, which fastgan does "
                                              "not convert"):
        convert_pix2pix_reference(state, "G", ngf=4, num_downs=5)


def test_command_line_writes_a_fastgan_checkpoint(tmp_path, capsys):
    reference = randomize(ReferencePatchGAN(6, 4, 3))
    src, out = tmp_path / "latest_net_D.pth", tmp_path / "D.pt"
    torch.save(reference.state_dict(), src)
    assert main(["pix2pix-reference", str(src), str(out), "--net", "D", "--ndf", "4"]) == 0
    assert f"wrote {out}: pix2pix D" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D.pt", "latest_net_D.pth"]  # no temp file left

    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["format_version"] == 1 and checkpoint["family"] == "pix2pix"
    assert checkpoint["model_args"] == {"D": {"in_ch": 6, "ndf": 4, "n_layers": 3, "norm": "batch"}}
    model = build_model(checkpoint["family"], "D", **checkpoint["model_args"]["D"])
    model.load_state_dict(checkpoint["models"]["D"], strict=True)
    x = torch.randn(1, 6, 64, 64)
    torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


def test_command_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pix2pix-reference", str(tmp_path / "absent.pth"), str(tmp_path / "G.pt")])
    assert exit_info.value.code == 2
    assert re.search(r"pix2pix-reference: error: .*No such file.*absent\.pth", capsys.readouterr().err)
    src = tmp_path / "latest_net_G.pth"
    torch.save(ReferenceUnet(3, 3, 5, ngf=4).state_dict(), src)
    with pytest.raises(SystemExit):
        main(["pix2pix-reference", str(src), str(tmp_path / "G.pt"), "--ngf", "4"])
    assert "missing keys (not filled)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_net_G.pth"]
    with pytest.raises(SystemExit) as exit_info:
        main(["pix2pix-reference", str(src), str(tmp_path / "G.pt"), "--net", "X"])
    assert exit_info.value.code == 2 and "invalid choice: 'X'" in capsys.readouterr().err


def test_command_line_refuses_to_write_over_its_source(tmp_path, capsys):
    src = tmp_path / "latest_net_G.pth"
    torch.save(ReferenceUnet(3, 3, 5, ngf=4).state_dict(), src)
    before = src.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["pix2pix-reference", str(src), str(tmp_path / "." / src.name), "--ngf", "4", "--num-downs", "5"])
    assert exit_info.value.code == 2
    assert "would replace the reference weights; give another file name" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_command_line_names_a_file_that_is_no_state_dict(tmp_path, capsys):
    src = tmp_path / "latest_net_G.pth"
    src.write_text("id,name\n1,photo\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["pix2pix-reference", str(src), str(tmp_path / "G.pt")])
    assert exit_info.value.code == 2
    assert re.fullmatch(f"python -m fastgan.convert pix2pix-reference: error: {re.escape(str(src))} is not a readable "
                        r"checkpoint \(truncated, damaged, or not written by torch\.save\): \w+Error: [^\n]+\n",
                        capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_net_G.pth"]


def converted(tmp_path, reference: nn.Module, *argv: str) -> str:
    src, out = tmp_path / "latest_net.pth", tmp_path / "converted.pt"
    torch.save(reference.state_dict(), src)
    assert main(["pix2pix-reference", str(src), str(out), *argv]) == 0
    return str(out)


def test_translate_with_converted_grayscale_input_weights(tmp_path):
    """A 1-channel-input reference G (e.g. trained on grayscale sketches) reads its inputs as grayscale."""
    reference = randomize(ReferenceUnet(1, 3, 5, ngf=4)).eval()
    checkpoint = converted(tmp_path, reference, "--ngf", "4", "--num-downs", "5")
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photo)
    assert translate.main(["--checkpoint", checkpoint, "--input", str(photo), "--output", str(tmp_path / "out"),
                           "--size", "32", "--device", "cpu", "--no-ema"]) == 0
    gray = to_tensor(resize_center_crop(Image.open(photo).convert("L"), 32))
    with torch.no_grad():
        expected = to_uint8(reference(gray[None]))[0].astype(int)
    written = np.asarray(Image.open(tmp_path / "out" / "photo.png")).astype(int)
    assert written.shape == (32, 32, 3) and np.abs(written - expected).max() <= 1
    with pytest.raises(SystemExit, match="this pix2pix generator maps 1-channel to 3-channel images; evaluate scores "
                                         r"RGB pairs \(3 to 3 channels\) only"):
        evaluate.main(["--checkpoint", checkpoint, "--data", "default"])


def test_translate_refuses_channel_counts_no_image_file_has(tmp_path):
    checkpoint = converted(tmp_path, randomize(ReferenceUnet(1, 2, 5, ngf=4)), "--ngf", "4", "--num-downs", "5")
    with pytest.raises(SystemExit, match="this pix2pix generator maps 1-channel to 2-channel images; translate reads "
                                         r"and writes grayscale \(1 channel\) or RGB \(3 channel\) images only"):
        translate.main(["--checkpoint", checkpoint, "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool, argv", [
    (translate.main, ["--input", ".", "--output", "out"]),
    (sample.main, ["--output", "grid.png"]),
    (evaluate.main, ["--data", "default"]),
])
def test_a_converted_discriminator_is_no_generator(tmp_path, tool, argv):
    checkpoint = converted(tmp_path, randomize(ReferencePatchGAN(6, 4, 3)), "--net", "D", "--ndf", "4")
    with pytest.raises(SystemExit, match=f"^--checkpoint {re.escape(checkpoint)} holds no generator \\('G'\\), only "
                                         f"pix2pix D; these tools need a generator to make images$"):
        tool(["--checkpoint", checkpoint, *argv])
