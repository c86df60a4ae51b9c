"""Canny edge maps: the input side of edges -> photo translation."""
from __future__ import annotations

import cv2
import numpy as np


def check_canny_args(low: float, high: float, blur: int) -> None:
    if not 0 <= low <= high:
        raise ValueError(f"Canny thresholds need 0 <= low <= high; got low={low}, high={high}")
    if isinstance(blur, bool) or not isinstance(blur, int) or blur < 0 or (blur and blur % 2 == 0):
        raise ValueError(f"blur is the Gaussian kernel size: 0 (no blur) or an odd positive int; got {blur!r}")


def canny_edges(rgb_uint8: np.ndarray, low: float = 100, high: float = 200, blur: int = 0,
                invert: bool = False) -> np.ndarray:
    """Canny edges of an HxWx3 uint8 RGB image as an HxWx3 uint8 image (white edges on black).

    blur > 0 smooths the grayscale image with a blur x blur Gaussian first, so texture and
    JPEG noise do not become edges; invert=True gives black edges on white, like a drawing.
    """
    if not isinstance(rgb_uint8, np.ndarray) or rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 3 \
            or rgb_uint8.shape[2] != 3:
        shape = getattr(rgb_uint8, "shape", None)
        dtype = getattr(rgb_uint8, "dtype", type(rgb_uint8).__name__)
        raise ValueError(f"canny_edges needs an HxWx3 uint8 RGB array; got {dtype} of shape {shape}")
    check_canny_args(low, high, blur)
    gray = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY)
    if blur:
        gray = cv2.GaussianBlur(gray, (blur, blur), 0)
    edges = cv2.Canny(gray, low, high)
    if invert:
        edges = 255 - edges
    return cv2.cvtColor(edges, cv2.COLOR_GRAY2RGB)
