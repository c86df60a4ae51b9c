"""Image grids for sample files, TensorBoard and the sampling tools (torchvision-free)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N,C,H,W] in [-1, 1] -> [N,H,W,3] uint8 (grayscale repeated to RGB)."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def grid(rows: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """Rows of equally sized images -> one HxWx3 uint8 picture, white gaps between cells."""
    rows = [to_uint8(r) for r in rows]
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = image
    return out


def save_image(picture: np.ndarray, path: str | Path) -> Path:
    """Writes an HxWx3 uint8 picture in the format of the path's extension; creates its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
    return path
