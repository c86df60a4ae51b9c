"""Builds fastgan._C, the operator library, from csrc/.

CPU kernels are always built. CUDA kernels are added when torch is a CUDA build and
a CUDA toolkit is found, or forced with FASTGAN_CUDA=1 (FASTGAN_CUDA=0 turns them
off). TORCH_CUDA_ARCH_LIST picks the GPU architectures as usual. FASTGAN_NATIVE=0
drops -march=native for a build that must run on other CPUs.
"""
import glob
import os
import sys
from pathlib import Path

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
from fastgan._build import LINK_FLAGS, NVCC_FLAGS, cxx_flags, sources_digest  # noqa: E402


def _want_cuda() -> bool:
    flag = os.environ.get("FASTGAN_CUDA", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _sources(cuda: bool) -> list[str]:
    names = ["csrc/ops.cpp", "csrc/autograd.cpp", "csrc/python_module.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    if cuda:
        names += sorted(glob.glob("csrc/cuda/*.cu"))
    return names


def extension():
    cuda = _want_cuda()
    kind = cpp_extension.CUDAExtension if cuda else cpp_extension.CppExtension
    args = {"cxx": cxx_flags()}
    if cuda:
        args["nvcc"] = NVCC_FLAGS
    return kind(
        name="fastgan._C",
        sources=_sources(cuda),
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args=args,
        extra_link_args=LINK_FLAGS,
        # The loader compares it with the sources beside an editable install, so a library left
        # from before an update is not loaded against Python code that expects the new operators.
        define_macros=[("FASTGAN_SOURCES_DIGEST", sources_digest(Path(ROOT) / "csrc"))]
        + ([("FASTGAN_WITH_CUDA", "1")] if cuda else []),
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
