"""The memory layout the compiled kernels read and write: a mirror of csrc/common.h's kernel_layout.

Kept apart from the fakes (which need a compiled library) because callers of the kernels use it
too: a gradient brought into this layout once is not copied again by each kernel that reads it.
"""
from __future__ import annotations

import torch


def kernel_layout(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
