"""What a results file says about the machine that produced it.

Numbers are only comparable with numbers from the same device, software and load, so
every run records all three next to its figures.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

import fastgan
from benchmarks.cases import error_reason

REPO = Path(__file__).resolve().parent.parent
# Nominal HBM bandwidth in GB/s, first match on torch.cuda.get_device_name() wins.
NOMINAL_PEAK_GBPS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100 NVL", 3900.0), ("H100", 3350.0))
CPU_PEAK_NOTE = "n/a (CPU): no nominal memory bandwidth is known for CPUs"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> float | None:
    """The 1-minute load average: other work on the machine makes CPU numbers noisy."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def nominal_peak_gbps(name: str) -> float | None:
    return next((gbps for key, gbps in NOMINAL_PEAK_GBPS if key.lower() in name.lower()), None)


def _git() -> dict:
    """HEAD and whether the tree differs from it; FASTGAN_SOURCE_COMMIT overrides both, for a GPU
    session whose device runs a copy of the working tree beside a stale copy of .git."""
    if stated := os.environ.get("FASTGAN_SOURCE_COMMIT"):
        return {"commit": stated, "dirty": None, "stated_by": "FASTGAN_SOURCE_COMMIT"}

    def git(*args):
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None
    try:
        status = git("status", "--porcelain")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "error": error_reason(exc)}


def _fastgan_info() -> dict:
    try:
        import fastgan.ops

        return dict(fastgan.ops.backend_info())
    except Exception as exc:  # the fused rows will fail on their own; the run goes on
        return {"error": error_reason(exc)}


def _dali_version() -> str | None:
    """The installed DALI wheel's version, without importing DALI (slow, and needs no GPU to say this)."""
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return None
    for dist in importlib.metadata.distributions():
        if (dist.metadata["Name"] or "").lower().startswith("nvidia-dali"):
            return dist.version
    return "installed, version unknown"


def _nvidia_driver() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def fused_kernels_missing(machine: dict) -> str | None:
    """Why the run's "fused" rows did not time fastgan's compiled kernels, or None when they did. With
    no compiled library for the device (a failed build), fastgan runs its reference implementation,
    and the fused rows and the fastgan configuration time that: numbers no reader should take for
    the kernels'."""
    info = machine.get("fastgan") or {}
    if "backend" not in info:
        return f"fastgan's operators did not import ({info.get('error')})"
    if info["backend"] == "reference":
        return f"fastgan ran its reference operators, no compiled library ({info.get('reason')})"
    if machine["device"] == "cuda" and not info.get("cuda"):
        return f"fastgan's {info['backend']} library has no CUDA kernels, so CUDA tensors took the reference operators"
    return None


def machine_info(device: str) -> dict:
    info = {"device": device, "cpu_model": cpu_model(), "cpu_count": cpu_count(), "loadavg_start": loadavg(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "platform": platform.platform(),
            "fastgan": _fastgan_info(), "fastgan_version": fastgan.__version__, "dali": _dali_version(),
            "git": _git(),
            # glibc's allocator settings decide whether big CPU tensors are faulted in afresh every step.
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                    driver=_nvidia_driver())
    else:
        info["device_name"] = info["cpu_model"]
    return info
