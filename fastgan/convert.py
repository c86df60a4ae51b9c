"""Converts other implementations' checkpoints into fastgan checkpoints.

    python -m fastgan.convert pix2pix-reference latest_net_G.pth G.pt
    python -m fastgan.convert pix2pix-reference latest_net_D.pth D.pt --net D

pix2pix-reference reads the state_dicts that junyanz/pytorch-CycleGAN-and-pix2pix saves
(`latest_net_G.pth`: unet_256 or unet_128 with batch norm; `latest_net_D.pth`: the
'basic' PatchGAN) and writes {format_version, family, model_args, models}, the layout
the trainer and `fastgan.models.build_model` read. Key mapping: docs/models.md.
"""
from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from fastgan.checkpoint import FORMAT_VERSION, read_torch_file, save_atomic
from fastgan.models import MODELS

FAMILY = "pix2pix"
ROLES = ("G", "D")
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class ConversionError(ValueError):
    """The source checkpoint does not fit the requested architecture."""


def reference_unet_module_map(num_downs: int) -> dict[str, str]:
    """Reference module path -> ours, for every U-Net layer that holds parameters or buffers.

    The reference nests one skip block per level, each a Sequential `model`: the outermost
    holds [conv, block 1, ReLU, convT, Tanh], the middle ones [LeakyReLU, conv, norm,
    block k+1, ReLU, convT, norm, (Dropout)], the innermost [LeakyReLU, conv, ReLU, convT,
    norm]. So level k's Sequential is at `model.model` + `.1.model` + `.3.model` * (k - 1).
    """
    innermost = num_downs - 1
    mapping = {}
    for k in range(num_downs):
        level = "model.model" + (".1.model" + ".3.model" * (k - 1) if k else "")
        if k == 0:
            slots = {0: "encoder.0.0", 3: "decoder.0.0"}
        elif k == innermost:
            slots = {1: f"encoder.{k}.0", 3: f"decoder.{k}.0", 4: f"decoder.{k}.1"}
        else:
            slots = {1: f"encoder.{k}.0", 2: f"encoder.{k}.1", 5: f"decoder.{k}.0", 6: f"decoder.{k}.1"}
        mapping.update({f"{level}.{index}": ours for index, ours in slots.items()})
    return mapping


def _infer_channels(source: Mapping[str, torch.Tensor], net: str) -> dict[str, int]:
    """Image channel counts read off the outermost layers, so 1-channel (e.g. colorization) models convert too."""
    if net == "G":
        first, last = source.get("model.model.0.weight"), source.get("model.model.3.weight")
        inferred = {"in_ch": first.shape[1] if first is not None else None,
                    "out_ch": last.shape[1] if last is not None else None}
    else:
        first = source.get("model.0.weight", source.get("net.0.weight"))
        inferred = {"in_ch": first.shape[1] if first is not None else None}
    return {name: int(value) for name, value in inferred.items() if value is not None}


def _strip_data_parallel(state_dict: Mapping) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()):
        raise ConversionError("expected a state_dict (a mapping of parameter names to tensors), got "
                              f"{type(state_dict).__name__}")
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def _constructor_defaults(net: str) -> dict:
    """Our model's keyword defaults, so the saved model_args spell out the whole architecture."""
    parameters = inspect.signature(MODELS[FAMILY][net]).parameters.values()
    return {p.name: p.default for p in parameters if p.name != "fused" and p.default is not p.empty}


def _target_state(net: str, model_args: dict) -> dict[str, torch.Tensor]:
    """Our model's state_dict: the names and shapes to fill."""
    return MODELS[FAMILY][net](**model_args, fused=False).state_dict()


def _report(net: str, model_args: dict, unexpected: list, missing: list, mismatched: list) -> str:
    lines = [f"the checkpoint does not fit pix2pix {net} with {model_args}:"]
    if unexpected:
        lines.append(f"  unexpected keys (not used): {', '.join(unexpected)}")
    if missing:
        lines.append(f"  missing keys (not filled): {', '.join(missing)}")
    if mismatched:
        lines.append(f"  shape mismatches: {'; '.join(mismatched)}")
    hint = "--ngf/--num-downs" if net == "G" else "--ndf/--n-layers"
    lines.append(f"  check --net and {hint} against the options the model was trained with")
    if any(k.endswith(".bias") for k in unexpected) and any(k.endswith("running_mean") for k in missing):
        lines.append("  conv biases where BatchNorm statistics belong: the reference was trained with --norm "
                     "instance, which fastgan does not convert (only its default --norm batch)")
    return "\n".join(lines)


def convert_pix2pix_reference(state_dict: Mapping[str, torch.Tensor], net: str = "G",
                              **model_args) -> tuple[dict[str, torch.Tensor], dict]:
    """Maps a reference pix2pix state_dict onto ours; returns (our state_dict, our model kwargs).

    model_args are UNetGenerator's (ngf, num_downs, dropout, ...) for net "G" and
    PatchDiscriminator's (ndf, n_layers) for "D"; in_ch/out_ch default to what the
    checkpoint holds. Every source key must be used and every target key filled, except
    BatchNorm's num_batches_tracked, which checkpoints from before PyTorch 0.4.1 lack
    (it starts at 0 then, as nn.BatchNorm2d does when loading them).
    """
    if net not in ROLES:
        raise ConversionError(f"net must be one of {', '.join(ROLES)}; got {net!r}")
    if model_args.get("norm", "batch") != "batch":
        raise ConversionError(f"only batch-norm reference checkpoints are supported; got norm={model_args['norm']!r}")
    source = _strip_data_parallel(state_dict)
    args = {**_constructor_defaults(net), **_infer_channels(source, net), **model_args, "norm": "batch"}
    target = _target_state(net, args)
    if net == "G":
        num_downs = len({key.split(".")[1] for key in target if key.startswith("encoder.")})
        module_map = reference_unet_module_map(num_downs)
    else:  # our layout is the reference's, whose PixelDiscriminator names its Sequential `net`
        source_root = "net" if args["n_layers"] == 0 else "model"
        modules = {key.rpartition(".")[0] for key in target}
        module_map = {module.replace("model", source_root, 1): module for module in modules}

    converted, unexpected, mismatched = {}, [], []
    for key, value in source.items():
        module, _, leaf = key.rpartition(".")
        ours = f"{module_map[module]}.{leaf}" if module in module_map else None
        if ours not in target:
            unexpected.append(key)
        elif value.shape != target[ours].shape:
            mismatched.append(f"{key} {tuple(value.shape)} -> {ours} {tuple(target[ours].shape)}")
        else:
            converted[ours] = value
    for key in target:
        module = key.rpartition(".")[0]
        if key.endswith(".num_batches_tracked") and key not in converted and f"{module}.running_mean" in converted:
            converted[key] = torch.tensor(0, dtype=torch.long)
    missing = [key for key in target if key not in converted]
    if unexpected or missing or mismatched:
        raise ConversionError(_report(net, args, unexpected, missing, mismatched))
    return {key: converted[key] for key in target}, args


def _pix2pix_reference(args: argparse.Namespace) -> str:
    if args.out.exists() and args.src.exists() and args.out.samefile(args.src):
        raise ValueError(f"OUT.pt {args.out} is SRC.pth {args.src}: writing it would replace the reference "
                         f"weights; give another file name")
    state_dict = read_torch_file(args.src)
    model_args = ({"ngf": args.ngf, "num_downs": args.num_downs} if args.net == "G"
                  else {"ndf": args.ndf, "n_layers": args.n_layers})
    converted, model_args = convert_pix2pix_reference(state_dict, args.net, **model_args)
    save_atomic({"format_version": FORMAT_VERSION, "family": FAMILY, "model_args": {args.net: model_args},
                 "models": {args.net: converted}}, args.out)
    count = sum(value.numel() for key, value in converted.items() if not key.endswith(BN_BUFFERS))
    return f"wrote {args.out}: pix2pix {args.net} {model_args}, {count:,} parameters"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastgan.convert",
                                     description="Convert other implementations' checkpoints to fastgan checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    reference = commands.add_parser(
        "pix2pix-reference", help="junyanz/pytorch-CycleGAN-and-pix2pix pix2pix weights (batch norm)",
        description="Convert latest_net_G.pth (unet_256 / unet_128, batch norm) or latest_net_D.pth (basic "
                    "PatchGAN, batch norm) of junyanz/pytorch-CycleGAN-and-pix2pix into a fastgan checkpoint. "
                    "Image channel counts are read from the weights; architecture sizes must match the "
                    "options the model was trained with.")
    reference.add_argument("src", type=Path, metavar="SRC.pth", help="the reference state_dict file")
    reference.add_argument("out", type=Path, metavar="OUT.pt", help="the fastgan checkpoint to write")
    reference.add_argument("--net", choices=ROLES, default="G", help="generator or discriminator (default: G)")
    reference.add_argument("--ngf", type=int, default=64,
                           help="--net G: generator width, the reference's --ngf (default: 64)")
    reference.add_argument("--ndf", type=int, default=64,
                           help="--net D: discriminator width, the reference's --ndf (default: 64)")
    reference.add_argument("--num-downs", type=int, default=8,
                           help="--net G: U-Net depth, 8 for unet_256, 7 for unet_128 (default: 8)")
    reference.add_argument("--n-layers", type=int, default=3,
                           help="--net D: PatchGAN depth, the reference's --n_layers_D; 3 is its 'basic' D, "
                                "0 its 'pixel' D (default: 3)")
    reference.set_defaults(run=_pix2pix_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(args.run(args))
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
