"""Loading a trained generator for the command-line tools (translate, sample, evaluate)."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt_io
from .models import build_model
from .outputs import write_problem
from .visualize import save_image


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA GPU is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SystemExit(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def make_folder(folder: Path, option: str) -> None:
    """Creates an output folder and checks that files can be written into it, or stops with one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SystemExit(f"{option} {folder}: cannot create the folder, a file stands in its path") from None
    except OSError as error:
        raise SystemExit(f"{option} {folder}: cannot create the folder: {error.strerror}") from None
    problem = write_problem(folder)
    if problem:
        raise SystemExit(f"{option} {folder}: cannot write into the folder: {problem}")


def save_output(picture, path: Path, option: str) -> None:
    """save_image for the tools' results: a file that cannot be written (read-only, disk full) is one line."""
    try:
        save_image(picture, path)
    except OSError as error:
        raise SystemExit(f"{option}: cannot write {path}: {error.strerror or error}") from None


def load_generator(path: str | Path, device: torch.device, ema: bool = True) -> tuple[nn.Module, dict]:
    """(generator in eval mode, checkpoint); prefers the EMA weights when the run kept them."""
    try:
        ckpt = ckpt_io.load(path, map_location="cpu")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--checkpoint: {e}") from None
    if "G" not in ckpt["models"]:  # e.g. a discriminator converted with fastgan.convert --net D
        held = ", ".join(ckpt["models"]) or "no networks"
        raise SystemExit(f"--checkpoint {path} holds no generator ('G'), only {ckpt.get('family', 'unknown')} {held}; "
                         f"these tools need a generator to make images")
    G = build_model(ckpt["family"], "G", **ckpt["model_args"]["G"])
    weights = ckpt["models"].get("G_ema") if ema else None
    G.load_state_dict(weights if weights is not None else ckpt["models"]["G"])
    return G.to(device).eval(), ckpt


TRAIN_MODE_HELP = ("pix2pix: run the generator as in training, dropout on and BatchNorm from each batch's own "
                   "statistics: the pix2pix paper's test protocol and the reference test.py's default (without its "
                   "--eval). --batch-size 1 normalizes each image by its own statistics, as the reference does. "
                   "Dropout's noise is seeded, so a run repeats")


def use_train_mode(G: nn.Module, family: str) -> None:
    """--train-mode: the generator as in training, its dropout seeded so that a run repeats."""
    if family != "pix2pix":
        raise SystemExit(f"--train-mode is pix2pix's test protocol; {family} generators run in eval mode")
    G.train()
    torch.manual_seed(0)


def open_for_cli(args) -> tuple[nn.Module, dict, torch.device]:
    """The shared start of the command-line tools: --device, --checkpoint and --no-ema."""
    device = pick_device(args.device)
    G, ckpt = load_generator(args.checkpoint, device, ema=not args.no_ema)
    return G, ckpt, device


def trained_setting(ckpt: dict, section: str, key: str, fallback):
    """An option of the config the checkpoint was trained with; `fallback` when it has none (converted weights)."""
    return ckpt.get("config", {}).get(section, {}).get(key, fallback)


def trained_size(ckpt: dict, fallback: int) -> int:
    """The image size the generator was trained at, when the checkpoint's config says."""
    return int(trained_setting(ckpt, "data", "crop_size", fallback))


def check_at_least_one(args, *options: str) -> None:
    """Count options (--batch-size, --size, ...) must be >= 1 when given; checked before a checkpoint loads."""
    for option in options:
        value = getattr(args, option.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            raise SystemExit(f"{option} must be >= 1, got {value}")


def check_unet_size(size: int, ckpt: dict) -> None:
    """A pix2pix U-Net halves its input num_downs times, so the image side must divide by 2^num_downs."""
    multiple = 2 ** ckpt["model_args"]["G"]["num_downs"]
    if size % multiple:
        raise SystemExit(f"--size {size} must be a multiple of {multiple} (2^num_downs of this U-Net)")


def run_cli(prog: str, main: Callable[[], int]) -> int:
    """Runs a tool's main() from the command line: a user error (SystemExit with a message, as main raises it for
    callers and tests) becomes one `prog: error: message` line on stderr and exit status 2, as argparse's own."""
    try:
        return main()
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        print(f"{prog}: error: {stop.code}", file=sys.stderr)
        return 2
