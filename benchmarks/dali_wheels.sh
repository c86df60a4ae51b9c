#!/usr/bin/env bash
# DALI for the GPU machine, which has no DALI and no network, in pieces that fit the
# device tool's 64 MiB per call (55 MB pieces leave room for the working tree) (DESIGN.md, "Environment facts").
#
#   here:    bash benchmarks/dali_wheels.sh prepare   # download the wheels, split into .dali-pieces/NN
#   device:  one call per piece, carry=[".carry"], in quick succession (the machine must stay warm):
#              mkdir -p .carry && cp .dali-pieces/NN .carry/   (here, before each call)
#              bash benchmarks/dali_wheels.sh stash           (there: keeps the piece in .dali-stash/)
#   device:  bash benchmarks/dali_wheels.sh install           (there, last call: join, pip install --target)
#            then export PYTHONPATH=/tmp/dali-site:$PYTHONPATH and run the DALI tests/benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
PIECES=.dali-pieces STASH=.dali-stash SITE=${DALI_SITE:-/tmp/dali-site}
# nvidia-dali-cuda130 2.4.0 and what it requires that the GPU machine lacks (numpy, packaging and six are there).
WHEELS=(nvidia-dali-cuda130==2.4.0 "nvidia-nvimgcodec-cu13[all]>=0.9,<0.10" nvidia-libnvcomp-cu13==5.3.0.16
        astunparse==1.6.3 gast==0.6.0 optree nvtx makefun "libcst~=1.8" pyyaml)

case "${1:-}" in
  prepare)
    rm -rf .dali-wheels "$PIECES"
    for wheel in "${WHEELS[@]}"; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .dali-wheels "$wheel"
    done
    # nvimgcodec's [all] extra names its codec wheels; fetch them too.
    for extra in $(unzip -p .dali-wheels/nvidia_nvimgcodec*.whl '*/METADATA' \
                   | sed -n 's/^Requires-Dist: \([A-Za-z0-9_.-]*\).*extra == "all".*/\1/p' | sort -u \
                   | grep -v '^nvidia-libnvcomp'); do  # DALI pins its own libnvcomp: one version only
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .dali-wheels "$extra"
    done
    mkdir -p "$PIECES"
    tar -cf - .dali-wheels | split -b 55M -d - "$PIECES/"
    ls -l .dali-wheels "$PIECES"
    echo "dali_wheels: $(ls "$PIECES" | wc -l) pieces in $PIECES; carry them one per call (see the header)"
    ;;
  stash)
    mkdir -p "$STASH"
    for piece in .carry/*; do mv "$piece" "$STASH/$(basename "$piece")"; done
    ls -l "$STASH"
    ;;
  install)
    cat "$STASH"/* | tar -xf -
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .dali-wheels/*.whl
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" python3 -c "import nvidia.dali as d; print('DALI', d.__version__)"
    ;;
  *)
    echo "usage: bash benchmarks/dali_wheels.sh prepare|stash|install" >&2
    exit 2
    ;;
esac
