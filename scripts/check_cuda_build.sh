#!/usr/bin/env bash
# Compile-only check of the CUDA operator library, for machines without a GPU: builds
# the sources setup.py builds, with setup.py's own flags and macros (read from its
# extension(), so the two cannot drift apart), against the headers of a CUDA build of
# torch, in a temporary folder. Fails on any compile error.
# Usage: scripts/check_cuda_build.sh [python]   (default: $PYTHON, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python3}}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # without a GPU torch cannot guess
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export FASTGAN_CUDA=1
BUILD=$(mktemp -d /tmp/fastgan_cuda_check.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT

"$PY" - "$BUILD" <<'EOF'
import glob, os, runpy, site, sys
import setuptools
import torch
from torch.utils import cpp_extension

if not torch.version.cuda:
    sys.exit(f"check_cuda_build: {sys.executable} has torch {torch.__version__}, not a CUDA build")
setuptools.setup = lambda **kwargs: None  # take setup.py's extension() without building
ext = runpy.run_path("setup.py")["extension"]()
macros = [f"-D{name}" if value is None else f"-D{name}={value}" for name, value in ext.define_macros]
# cusparse.h and friends come from pip's CUDA wheels, not from every toolkit install.
wheel_includes = [d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "cu*", "include"))]
print(f"check_cuda_build: torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"arch {os.environ['TORCH_CUDA_ARCH_LIST']}\n  sources: {' '.join(ext.sources)}\n"
      f"  cxx: {' '.join(ext.extra_compile_args['cxx'] + macros)}\n"
      f"  nvcc: {' '.join(ext.extra_compile_args['nvcc'] + macros)}", flush=True)
cpp_extension.load(
    name="fastgan_cuda_check",
    sources=ext.sources,
    extra_include_paths=ext.include_dirs + wheel_includes,
    extra_cflags=ext.extra_compile_args["cxx"] + macros,
    extra_cuda_cflags=ext.extra_compile_args["nvcc"] + macros,
    extra_ldflags=ext.extra_link_args,
    build_directory=sys.argv[1],
    with_cuda=True,
    is_python_module=False,
    verbose=True,
)
print(f"check_cuda_build: OK, {len(ext.sources)} sources compiled and linked")
EOF
