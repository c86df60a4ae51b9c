"""Compiler flags of the operator library, shared by setup.py (AOT) and the JIT loader,
so both builds compile the same code the same way."""
from __future__ import annotations

import os

NVCC_FLAGS = ["-O3", "-lineinfo"]
LINK_FLAGS = ["-fopenmp"]


def cxx_flags() -> list[str]:
    """-march=native unless FASTGAN_NATIVE=0 (a build that must run on other CPUs)."""
    flags = ["-O3", "-fopenmp"]
    if os.environ.get("FASTGAN_NATIVE", "1") != "0":
        flags.append("-march=native")
    return flags
