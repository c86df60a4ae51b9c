"""Compiler flags of the operator library, shared by setup.py (AOT) and the JIT loader,
so both builds compile the same code the same way."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

NVCC_FLAGS = ["-O3", "-lineinfo"]
LINK_FLAGS = ["-fopenmp"]


def cxx_flags() -> list[str]:
    """-march=native unless FASTGAN_NATIVE=0 (a build that must run on other CPUs)."""
    flags = ["-O3", "-fopenmp"]
    if os.environ.get("FASTGAN_NATIVE", "1") != "0":
        flags.append("-march=native")
    return flags


# Precedes the source digest inside a library built by setup.py (its generated sources_digest.cpp).
DIGEST_MARKER = b"fastgan-sources-digest:"
SOURCE_SUFFIXES = (".cpp", ".cu", ".h", ".cuh")


def sources_digest(csrc: Path) -> str:
    """sha256 of csrc's C++/CUDA sources, names and contents: which sources a library was built from."""
    digest = hashlib.sha256()
    for path in sorted(p for p in csrc.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()):
        digest.update(path.relative_to(csrc).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
