#!/usr/bin/env bash
# inplace_abn 1.1.0, the best-known fused BatchNorm+activation, for the operator suite's peer rows
# (benchmarks/README.md, "Operator suite"). Its sdist builds against the installed torch; the
# GPU machine has no network, so the sdist and the setuptools_scm its setup.py needs travel.
#
#   here:    bash benchmarks/peers.sh prepare   # into .peers/ (git-ignored, ~0.2 MB)
#   here:    bash benchmarks/peers.sh install   # also here: a CPU build (or a CUDA one with PYTHON=a CUDA
#                                                 # torch's python, CUDA_HOME and TORCH_CUDA_ARCH_LIST set)
#   device:  carry [".peers"]; benchmarks/gpu_session.sh runs `install` as its `peers` step
#            (a CUDA build, about a minute), then sets PYTHONPATH to the site folder.
#
# PYTHON (default: python3) must be the interpreter with torch; the site folder is
# PEER_SITE (default /tmp/peer-site): add it to PYTHONPATH to use it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=.peers SITE=${PEER_SITE:-/tmp/peer-site}

# with_scm SITE COMMAND...: COMMAND with setuptools_scm < 8 (the wheel in $DIR) importable from SITE.
# inplace_abn's setup.py imports torch and needs that setuptools_scm whenever pip reads its
# metadata, so every pip call on the sdist runs without build isolation, through this.
with_scm() {
  local site=$1
  shift
  "$PY" -m pip install -q --no-index --no-deps --target "$site" "$DIR"/setuptools_scm-*.whl
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$@"
}

case "${1:-}" in
  prepare)
    rm -rf "$DIR"
    mkdir -p "$DIR"
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$DIR" 'setuptools_scm<8'
    scratch=$(mktemp -d)
    with_scm "$scratch" "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$DIR" \
      inplace-abn==1.1.0
    rm -rf "$scratch"
    ls -l "$DIR"
    ;;
  install)
    [[ -f $DIR/inplace-abn-1.1.0.tar.gz ]] || { echo "peers: no $DIR/inplace-abn-1.1.0.tar.gz; run prepare" >&2; exit 2; }
    # A CUDA torch from pip keeps some CUDA headers (cusparse.h) in its nvidia wheels, not in every toolkit.
    wheel_includes=$("$PY" -c 'import glob, os, site
print(":".join(d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "cu*", "include"))))')
    export CPATH="${wheel_includes}${CPATH:+:$CPATH}"
    with_scm "$SITE" "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" \
      "$DIR"/inplace-abn-1.1.0.tar.gz
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import inplace_abn; print('inplace_abn', inplace_abn.__version__)"
    ;;
  *)
    echo "usage: bash benchmarks/peers.sh prepare|install" >&2
    exit 2
    ;;
esac
