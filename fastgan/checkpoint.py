"""Checkpoints that survive crashes: atomic writes, newest-valid resume, weights-only loads.

A checkpoint is one dict of tensors, numbers, strings and containers of them, so it
loads with `torch.load(weights_only=True)` (no pickled code runs). The top level
always has `format_version`, `family`, `model_args` ({role: constructor kwargs}) and
`models` ({role: state_dict}); the inference tools need nothing more. Training
checkpoints add optimizers, scalers, EMA, RNG states and the data position.
"""
from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt_(\d{8,})\.pt$")  # checkpoint_name pads to 8 digits, not beyond


def checkpoint_name(step: int) -> str:
    return f"ckpt_{step:08d}.pt"


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file beside `path` with the mode any new file gets (0666 less the umask): it becomes
    `path`, and mkstemp's private 0600 would keep a checkpoint from the others the umask lets read it."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def _write_atomic(path: str | Path, write) -> Path:
    """write(file) into a temp file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def save_atomic(obj: dict, path: str | Path) -> Path:
    return _write_atomic(path, lambda f: torch.save(obj, f))


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    """Replaces `path` with `data` whole or not at all (a log a resume rewrites)."""
    return _write_atomic(path, lambda f: f.write(data))


def copy_atomic(src: str | Path, path: str | Path) -> Path:
    """An atomic copy of a written checkpoint (best.pt), without serializing it again."""
    def write(f):
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f, 1 << 24)
    return _write_atomic(path, write)


class CheckpointError(ValueError):
    """A file that cannot serve as a checkpoint: torn, damaged, foreign, or from a newer fastgan."""


def _first_sentence(error: BaseException) -> str:
    """torch.load's messages run to paragraphs; the part that names the problem, for a one-line error."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = text.strip().splitlines()
    first = re.split(r"\.\s", lines[0], maxsplit=1)[0].rstrip(".") if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def read_torch_file(path: str | Path, map_location="cpu", mmap: bool = False):
    """torch.load(weights_only=True), with every failure to decode the file raised as one CheckpointError
    naming it. A missing or unpermitted file keeps its OSError, and running out of memory stays what it is.
    mmap=True maps the tensors instead of reading them, for a look at the small entries."""
    open(path, "rb").close()
    try:
        with warnings.catch_warnings():  # torch's advice for pickles it did not write; the error says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (MemoryError, torch.OutOfMemoryError):
        raise
    except Exception as error:  # a torn or foreign file makes torch raise anything from KeyError to OSError
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, damaged, or not written by "
                              f"torch.save): {_first_sentence(error)}") from error


def load(path: str | Path, map_location="cpu") -> dict:
    """The checkpoint at `path`. Raises FileNotFoundError when there is none, and CheckpointError (a
    ValueError) when the file is unreadable, not a fastgan checkpoint, or of a newer format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = read_torch_file(path, map_location)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "models" not in ckpt:
        raise CheckpointError(f"{path} is not a fastgan checkpoint (no format_version/models keys)")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format_version']}; this fastgan reads up to "
                              f"{FORMAT_VERSION}: upgrade fastgan")
    return ckpt


def _stepped(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))), reverse=True)


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Step checkpoints in `folder`, newest first."""
    return [p for _, p in _stepped(Path(folder))]


def _best_step(path: Path) -> int | None:
    """The step best.pt was written at, read without loading its tensors; None when unreadable."""
    try:
        return int(read_torch_file(path, mmap=True)["step"])
    except (OSError, ValueError, KeyError, TypeError):  # a torn or foreign best.pt is left where it is
        return None


def set_aside_after(folder: str | Path, step: int,
                    first: Callable[[Path], None] = lambda target: None) -> tuple[Path, int] | None:
    """Moves the step checkpoints numbered after `step`, and a best.pt written after it, into
    folder/abandoned-after-<step>, and returns (that folder, how many). A run resumed from an earlier
    checkpoint starts another timeline: left in place, the later files would make pruning (by step
    number) delete the new checkpoints, --train.resume auto pick the abandoned timeline, and best.pt
    hold a model of it. Nothing is deleted. `first(folder)` moves what else goes there before the
    checkpoints do: should it fail, they stay, and a retry finds them and moves both."""
    folder = Path(folder)
    later = [p for s, p in _stepped(folder) if s > step]
    best = folder / "best.pt"
    if best.is_file() and (_best_step(best) or 0) > step:
        later.append(best)
    if not later:
        return None
    target, n = folder / f"abandoned-after-{step:08d}", 2
    while target.exists():
        target, n = folder / f"abandoned-after-{step:08d}-{n}", n + 1
    target.mkdir()
    first(target)
    for path in later:
        path.rename(target / path.name)
    return target, len(later)


def load_latest(folder: str | Path, map_location="cpu") -> tuple[dict, Path] | None:
    """The newest checkpoint that loads, or None when `folder` holds none. A torn or foreign one is
    skipped with a warning; when every one is, CheckpointError says so (starting over would abandon
    them). Other failures (out of memory, a permission or I/O error) say nothing about the file and
    are raised: skipping on them would resume an older step."""
    paths = list_checkpoints(folder)
    for path in paths:
        try:
            return load(path, map_location), path
        except CheckpointError as e:  # a torn or foreign file must not end a resume: fall back
            warnings.warn(f"skipping unreadable checkpoint {path}: {type(e).__name__}: {e}", stacklevel=2)
        except FileNotFoundError:  # removed since it was listed
            continue
    if paths:
        raise CheckpointError(f"none of the {len(paths)} checkpoints in {folder} loads (the warnings above say "
                              f"why); resume one elsewhere with --train.resume PATH, or leave out "
                              f"--train.resume to start a fresh run (it writes to a new folder)")
    return None


def prune(folder: str | Path, keep_last: int) -> None:
    for path in list_checkpoints(folder)[keep_last:]:
        path.unlink(missing_ok=True)


def rng_state() -> dict:
    """Every random stream a training step draws from, in weights-only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores rng_state()'s streams. A checkpoint loaded with map_location='cuda' holds them on
    the GPU; the generators take CPU tensors."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
