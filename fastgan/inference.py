"""Loading a trained generator for the command-line tools (translate, sample, evaluate)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt_io
from .models import build_model


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA GPU is available")
    return device


def load_generator(path: str | Path, device: torch.device, ema: bool = True) -> tuple[nn.Module, dict]:
    """(generator in eval mode, checkpoint); prefers the EMA weights when the run kept them."""
    try:
        ckpt = ckpt_io.load(path, map_location="cpu")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--checkpoint: {e}") from None
    G = build_model(ckpt["family"], "G", **ckpt["model_args"]["G"])
    weights = ckpt["models"].get("G_ema") if ema else None
    G.load_state_dict(weights if weights is not None else ckpt["models"]["G"])
    return G.to(device).eval(), ckpt


def open_for_cli(args) -> tuple[nn.Module, dict, torch.device]:
    """The shared start of the command-line tools: --device, --checkpoint and --no-ema."""
    device = pick_device(args.device)
    G, ckpt = load_generator(args.checkpoint, device, ema=not args.no_ema)
    return G, ckpt, device


def trained_size(ckpt: dict, fallback: int) -> int:
    """The image size the generator was trained at, when the checkpoint's config says."""
    return int(ckpt.get("config", {}).get("data", {}).get("crop_size", fallback))
