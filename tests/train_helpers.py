"""Tiny, fast training configurations and small data writers shared by the tests."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# pix2pix on the embedded data at 32x32 with narrow networks: a step takes milliseconds.
TINY_PIX2PIX = ["--data.crop_size", "32", "--data.load_size", "36", "--model.num_downs", "5",
                "--model.ngf", "8", "--model.ndf", "8", "--train.batch_size", "4", "--train.log_every", "1",
                "--train.sample_every", "1000", "--train.val_batches", "1", "--train.progress", "false"]

TINY_SRGAN = ["--model.family", "srgan", "--data.crop_size", "24", "--model.scale", "2", "--model.num_blocks", "1",
              "--model.ngf", "8", "--model.ndf", "8", "--train.batch_size", "4", "--train.progress", "false"]


def tiny_dcgan(root, family: str = "dcgan") -> list[str]:
    dataset = "classes" if family == "conditional" else "folder"
    args = ["--model.family", family, "--data.dataset", dataset, "--data.root", str(root),
            "--data.crop_size", "32", "--data.load_size", "32", "--model.ngf", "8", "--model.ndf", "8",
            "--model.nz", "16", "--train.batch_size", "4", "--train.log_every", "1",
            "--train.sample_every", "1000", "--train.progress", "false", "--optim.schedule", "constant"]
    if family == "conditional":
        args += ["--model.num_classes", "2"]
    return args


def write_images(folder, n: int, size: int = 40, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def write_family_images(root, family: str, n: int) -> None:
    """n random images as `family` reads them: two class folders (n // 2 each) for conditional,
    one flat folder otherwise."""
    if family == "conditional":
        write_images(root / "cats", n // 2, seed=1)
        write_images(root / "dogs", n // 2, seed=2)
    else:
        write_images(root, n)


def write_aligned(folder, n: int, size: int = 36, seed: int = 0) -> None:
    """n aligned A|B images (two size x size halves side by side), the format of fastgan.prepare edges."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, 2 * size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def write_idx(path, array, compress=False):
    """An IDX file written independently of the reader: magic, big-endian dims, big-endian data."""
    codes = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
    array = np.asarray(array)
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    raw = (bytes([0, 0, codes[kind], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
           + array.astype(array.dtype.newbyteorder(">")).tobytes())
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def final_weights(out_dir) -> dict[str, torch.Tensor]:
    from fastgan import checkpoint
    state, _ = checkpoint.load_latest(out_dir)
    return {f"{role}.{k}": v for role, sd in state["models"].items() for k, v in sd.items()}


def metric_records(out_dir) -> list[dict]:
    """The records of a run's metrics.jsonl, the final summary included."""
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def loss_trace(out_dir, key: str) -> list[float]:
    """key's value at each logged step that has it (the final summary left out)."""
    return [r[key] for r in metric_records(out_dir) if key in r and not r.get("summary")]
