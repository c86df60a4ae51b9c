#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and installs fastgan (with its test and
# DALI extras; FASTGAN_EXTRAS overrides) into it, compiling the operator library
# against that same torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "torch==${TORCH_VERSION:-2.13.0}"
"$VENV/bin/pip" install -q "setuptools>=64" wheel ninja
# No build isolation: an isolated build would compile against a freshly downloaded
# (CUDA) torch while this venv's CPU torch runs the result.
"$VENV/bin/pip" install -q --no-build-isolation -e ".[${FASTGAN_EXTRAS:-test,dali}]"
"$VENV/bin/python" -c "import fastgan.ops as o; print('fastgan operators:', o.backend_info())"
