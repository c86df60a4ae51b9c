"""Output locations checked before the work that fills them.

A folder nobody may write (read-only disk, another user's folder) would otherwise surface as a
PermissionError traceback at the first file written: after sampling, training or translating.
"""
from __future__ import annotations

import tempfile
from pathlib import Path


def existing_ancestor(path: Path) -> Path:
    """`path` itself when it exists, else the nearest folder above it that does (where it would be created)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_problem(folder: Path) -> str:
    """'' when a file can be created in the existing `folder`, else the system's reason (e.g. 'Permission
    denied'). Found by making a nameless temporary file there, which nothing else sees."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return ""
    except OSError as error:
        return error.strerror or str(error)
