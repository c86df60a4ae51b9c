"""Finds a compiled operator library: the prebuilt extension, else a ninja JIT build.

FASTGAN_BACKEND=auto|aot|jit|reference picks the strategy (default auto: aot, then
jit, then the pure-PyTorch reference). A forced aot/jit that fails raises instead of
falling back.
"""
from __future__ import annotations

import fcntl
import importlib.util
import mmap
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from fastgan._build import DIGEST_MARKER, LINK_FLAGS, NVCC_FLAGS, cxx_flags, sources_digest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
CHOICES = ("auto", "aot", "jit", "reference")


@dataclass(frozen=True)
class BackendInfo:
    """Which implementation of the operators is live, and why."""

    backend: str  # "aot" | "jit" | "reference"
    cuda: bool  # CUDA kernels available
    path: str | None = None  # the loaded library
    reason: str | None = None  # why a compiled backend was not used

    def as_dict(self) -> dict:
        return {"backend": self.backend, "cuda": self.cuda, "path": self.path, "reason": self.reason}


def _has_kernels(device: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::bn_stats", device)


def _checked(info: BackendInfo) -> BackendInfo:
    """A library without CPU kernels (a broken build) must not pass for a backend."""
    if not _has_kernels("CPU"):
        raise RuntimeError(f"{info.path} registers no CPU kernels for fastgan::bn_stats")
    return info


class StaleLibrary(RuntimeError):
    """The prebuilt library was built from other sources than those beside it."""


def stale_reason(library: Path, csrc: Path) -> str | None:
    """Why `library` does not match the sources in `csrc`, or None when it does. Read from the
    file, not the loaded module: loading registers its operators, for good, in this process."""
    if library.stat().st_size == 0:  # mmap refuses an empty file
        return f"{library} is empty"
    with open(library, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start = data.find(DIGEST_MARKER)  # pages up to the marker only, not the whole library
        if start < 0:
            return f"{library} records no source digest (built by an older fastgan)"
        start += len(DIGEST_MARKER)
        built_from = data[start:start + 64].decode("ascii", "replace")
    if built_from != sources_digest(csrc):
        return f"{library} was built from other sources than those in {csrc} (they changed since the build)"
    return None


def _load_aot() -> BackendInfo:
    spec = importlib.util.find_spec("fastgan._C")
    own_build = spec is not None and spec.origin and Path(spec.origin).resolve().parent == CSRC.parent / "fastgan"
    if own_build and (CSRC / "ops.cpp").is_file():  # an editable install: its csrc/ is beside it
        reason = stale_reason(Path(spec.origin), CSRC)
        if reason:
            raise StaleLibrary(f"{reason}; rebuild it with `pip install --no-build-isolation -e .`, or delete "
                               f"it to let fastgan JIT-build the operators")
    from fastgan import _C

    return _checked(BackendInfo("aot", _has_kernels("CUDA"), path=_C.__file__))


def _ninjas_in(directory: Path) -> list[int]:
    """Live ninja processes working in `directory` (torch runs its builds there): their pids. Read
    from /proc, so Linux only; another user's processes are not visible and not counted."""
    target = os.path.realpath(directory)
    pids = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as comm:
                if comm.read().strip() == "ninja" and os.readlink(f"/proc/{entry.name}/cwd") == target:
                    pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return pids


def _wait_for_orphaned_ninja(directory: Path) -> None:
    """A build whose Python process was killed (SIGKILL, the OOM killer) can leave its ninja
    running: building beside it would interleave two builds' objects, so wait for it to finish."""
    pids = _ninjas_in(directory)
    if pids:
        print(f"fastgan: a killed build's ninja (pid {', '.join(map(str, pids))}) still runs in {directory}; "
              f"waiting for it to finish", file=sys.stderr)
    while pids:
        time.sleep(0.5)
        pids = _ninjas_in(directory)


QUIET_WAIT_S = 3.0


def _lock_quietly_at_first(handle, directory: Path) -> None:
    """Takes the lock, saying so only if another process holds it past QUIET_WAIT_S: every process
    holds it for a moment even when the library is built (torch runs a no-op ninja, then loads it), so
    the ranks of a run starting together would otherwise each report a build that is not happening."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    print(f"fastgan: another process is building the operators in {directory}; waiting for it", file=sys.stderr)
    fcntl.flock(handle, fcntl.LOCK_EX)


@contextmanager
def build_lock(directory: Path):
    """One process builds at a time, under a lock the kernel drops when its holder dies.

    torch's own lock is a file only its holder deletes: a build killed by a signal (a
    launcher's SIGTERM, SIGKILL, the OOM killer) leaves it behind, and every later import
    then waits on it forever, silently. While this lock is held no fastgan build runs
    anywhere else, so such a file is stale and is removed, once no ninja that the killed
    build left is still running in the folder."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(directory / "fastgan-build.lock", "a")
    except OSError as error:  # another user's lock file in a shared folder
        print(f"fastgan: building without the build lock ({error})", file=sys.stderr)
        yield
        return
    with handle:
        try:
            _lock_quietly_at_first(handle, directory)
        except OSError as error:  # a filesystem without flock (some network and FUSE mounts)
            print(f"fastgan: building without the build lock ({error}); a lock file left by a killed "
                  f"build stays, and torch waits on it", file=sys.stderr)
            yield
            return
        stale = directory / "lock"
        if stale.exists():
            _wait_for_orphaned_ninja(directory)
            print(f"fastgan: removing {stale}, left behind by a build that was killed", file=sys.stderr)
            stale.unlink(missing_ok=True)
        yield


def _load_jit() -> BackendInfo:
    from torch.utils import cpp_extension

    if not (CSRC / "ops.cpp").is_file():
        raise RuntimeError(f"the C++ sources are not at {CSRC} (an installed wheel has none)")
    cuda = bool(torch.version.cuda) and cpp_extension.CUDA_HOME is not None and torch.cuda.is_available()
    sources = [CSRC / "ops.cpp", CSRC / "autograd.cpp", *sorted((CSRC / "cpu").glob("*.cpp"))]
    if cuda:
        sources += sorted((CSRC / "cuda").glob("*.cu"))
    name = "fastgan_ops_cuda" if cuda else "fastgan_ops_cpu"
    # torch's own choice of folder (TORCH_EXTENSIONS_DIR, else its cache), so that the lock guards it.
    directory = Path(cpp_extension._get_build_directory(name, verbose=False))
    print("fastgan: no current prebuilt operator library; JIT-loading it with ninja "
          "(the first build takes ~30 s, later imports reuse it)", file=sys.stderr)
    with build_lock(directory):
        library = cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(CSRC)],
            extra_cflags=cxx_flags() + (["-DFASTGAN_WITH_CUDA=1"] if cuda else []),
            extra_cuda_cflags=NVCC_FLAGS,
            extra_ldflags=LINK_FLAGS,
            build_directory=str(directory),
            with_cuda=cuda,
            is_python_module=False,
        )
    return _checked(BackendInfo("jit", _has_kernels("CUDA"), path=str(library)))


def load() -> BackendInfo:
    """Loads the best available backend; the reference needs nothing loaded."""
    choice = os.environ.get("FASTGAN_BACKEND", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"FASTGAN_BACKEND={choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "reference":
        return BackendInfo("reference", torch.cuda.is_available(), reason="FASTGAN_BACKEND=reference")
    reasons = []
    for name, loader in (("aot", _load_aot), ("jit", _load_jit)):
        if choice not in ("auto", name):
            continue
        try:
            return loader()
        except Exception as error:  # any failure means: try the next backend
            if choice == name:
                raise RuntimeError(f"fastgan: FASTGAN_BACKEND={name} failed: {error}") from error
            if isinstance(error, StaleLibrary):  # there is a library, so say why it is passed over
                print(f"fastgan: not loading the prebuilt operator library: {error}", file=sys.stderr)
            reasons.append(f"{name}: {type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}")
    return BackendInfo("reference", torch.cuda.is_available(), reason="; ".join(reasons))
