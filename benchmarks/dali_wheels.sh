#!/usr/bin/env bash
# DALI for the GPU machine, which has no DALI and no network. Its wheels (~265 MB) exceed the
# device tool's 64 MiB per call, so they travel installed, stripped to one Python and
# xz-compressed (~175 MB), in three pieces: one per call of the GPU session, beside the
# working tree, so a piece is at most 64 MiB less the tree's size (benchmarks/README.md, "DALI
# on the GPU machine").
#
#   here:    bash benchmarks/dali_wheels.sh prepare    # download, install into a staging folder,
#                                                      # pack into .dali-pieces/ (a few minutes)
#   here:    bash benchmarks/dali_wheels.sh resplit    # the packed pieces cut again to fit the tree
#                                                      # as it is now (no download)
#   here:    bash benchmarks/dali_wheels.sh carry N    # before device call N (0, 1, 2): piece N into .carry/
#   device:  bash benchmarks/dali_wheels.sh stash      # keep the carried piece in .dali-stash/
#   device:  bash benchmarks/dali_wheels.sh missing    # the stashed sums' pieces not stashed yet, one per line
#   device:  bash benchmarks/dali_wheels.sh install    # once all pieces are stashed: unpack into DALI_SITE
#            benchmarks/gpu_session.sh runs stash and install itself, then puts DALI_SITE on PYTHONPATH.
#
# DALI_PYTHON (default 3.12, the GPU machine's) picks the Python whose extension modules are kept;
# DALI_SITE (default /tmp/dali-site) is where install unpacks; PYTHON (default python3) the
# interpreter that unpacks and checks the import. `install` exits 3 while pieces are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS_DIR=.dali-wheels PIECES=.dali-pieces STASH=.dali-stash CARRY=.carry
SITE=${DALI_SITE:-/tmp/dali-site} PYV=${DALI_PYTHON:-3.12} PY=${PYTHON:-python3}
CALL_BYTES=$(( 64 * 1024 * 1024 )) MARGIN_BYTES=$(( 512 * 1024 ))
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)
# nvidia-dali-cuda130 2.4.0 and what it requires that the GPU machine lacks (numpy, packaging and six are there).
WHEELS=(nvidia-dali-cuda130==2.4.0 "nvidia-nvimgcodec-cu13[all]>=0.9,<0.10" nvidia-libnvcomp-cu13==5.3.0.16
        astunparse==1.6.3 gast==0.6.0 optree nvtx makefun "libcst~=1.8" pyyaml)

# missing_pieces: the pieces SHA256SUMS lists that the stash does not hold yet.
missing_pieces() {
  awk '{print $2}' "$STASH/SHA256SUMS" | while read -r p; do [[ -f $STASH/$p ]] || echo "$p"; done
}

# tree_bytes: what the device tool sends besides the carried paths: tracked files and the
# untracked ones git does not ignore (a tracked file deleted from the work tree is not sent, so
# stat failing on it fails nothing).
tree_bytes() {
  { git ls-files -z; git ls-files -z -o --exclude-standard; } | { xargs -0 stat -c %s 2>/dev/null || true; } \
    | awk '{s += $1} END {print s + 0}'
}

# split_pieces FILE: FILE cut into pieces that each fit in one call beside the tree, with their sums.
# The count is checked before the old pieces are removed: a refused resplit keeps them and their sums.
split_pieces() {
  local tree piece count
  tree=$(tree_bytes)
  piece=$(( CALL_BYTES - tree - MARGIN_BYTES ))
  count=$(( piece > 0 ? ($(stat -c %s "$1") + piece - 1) / piece : 0 ))
  if (( piece <= 0 || count > 3 )); then
    echo "dali_wheels: beside a $(( tree / 1024 )) KiB tree the packed wheels make" \
         "$( (( piece > 0 )) && echo "$count pieces" || echo "no piece that fits");" \
         "the GPU session carries one in each of its three calls (benchmarks/README.md), so drop a" \
         "wheel, shrink the tree or revise that plan" >&2
    exit 1
  fi
  # Pieces of even size, the smallest that make `count`: the tree may grow most before a resplit.
  piece=$(( ($(stat -c %s "$1") + count - 1) / count ))
  rm -f "$PIECES"/piece-*
  split -b "$piece" -d -a 1 "$1" "$PIECES/piece-"
  (cd "$PIECES" && sha256sum piece-* > SHA256SUMS)
  ls -l "$PIECES"
  echo "dali_wheels: $count pieces for Python $(cat "$PIECES/PYTHON_VERSION") in $PIECES;" \
       "before device call N, run: bash benchmarks/dali_wheels.sh carry N"
}

download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    "${PLATFORMS[@]}" -d "$WHEELS_DIR" "$1"
}

case "${1:-}" in
  prepare)
    rm -rf "$WHEELS_DIR" "$PIECES"
    for wheel in "${WHEELS[@]}"; do download "$wheel"; done
    # nvimgcodec's [all] extra names its codec wheels; fetch them too.
    for extra in $(unzip -p "$WHEELS_DIR"/nvidia_nvimgcodec*.whl '*/METADATA' \
                   | sed -n 's/^Requires-Dist: \([A-Za-z0-9_.-]*\).*extra == "all".*/\1/p' | sort -u \
                   | grep -v '^nvidia-libnvcomp'); do  # DALI pins its own libnvcomp: one version only
      download "$extra"
    done
    stage=$(mktemp -d)
    trap 'rm -rf "$stage" "$stage.tar.xz"' EXIT
    python3 -m pip install -q --no-index --no-deps --no-compile --only-binary=:all: --python-version "$PYV" \
      --implementation cp "${PLATFORMS[@]}" --target "$stage" "$WHEELS_DIR"/*.whl
    # The wheels carry an extension module for every CPython; only DALI_PYTHON's travels.
    find "$stage" -name '*.cpython-3*' ! -name "*.cpython-${PYV/./}-*" -delete
    rm -rf "$stage/bin"
    mkdir -p "$PIECES"
    echo "$PYV" > "$PIECES/PYTHON_VERSION"
    tar -cf - -C "$stage" . | xz -9 -T0 > "$stage.tar.xz"
    split_pieces "$stage.tar.xz"
    rm -f "$stage.tar.xz"
    ;;
  resplit)
    [[ -f $PIECES/SHA256SUMS ]] || { echo "dali_wheels: no pieces in $PIECES; run prepare" >&2; exit 2; }
    (cd "$PIECES" && sha256sum --quiet -c SHA256SUMS)
    whole=$(mktemp)
    trap 'rm -f "$whole"' EXIT
    awk '{print $2}' "$PIECES/SHA256SUMS" | sed "s|^|$PIECES/|" | xargs cat > "$whole"
    split_pieces "$whole"
    ;;
  carry)
    piece="$PIECES/piece-${2:?usage: dali_wheels.sh carry N}"
    [[ -f $piece ]] || { echo "dali_wheels: no $piece; run prepare (pieces: $(ls "$PIECES" 2>/dev/null | tr '\n' ' '))" >&2; exit 2; }
    rm -rf "$CARRY"
    mkdir -p "$CARRY"
    cp "$piece" "$PIECES/SHA256SUMS" "$PIECES/PYTHON_VERSION" "$CARRY/"
    total=$(( $(tree_bytes) + $(du -sb "$CARRY" | cut -f1) ))
    if (( total > CALL_BYTES )); then
      echo "dali_wheels: the tree and $(basename "$piece") make $(( total / 1024 )) KiB, more than the" \
           "device tool's 64 MiB per call; run: bash benchmarks/dali_wheels.sh resplit" >&2
      exit 1
    fi
    echo "dali_wheels: $CARRY holds $(basename "$piece") of $(wc -l < "$PIECES/SHA256SUMS")" \
         "for Python $(cat "$PIECES/PYTHON_VERSION"); carry [\"$CARRY\"]"
    ;;
  stash)
    mkdir -p "$STASH"
    shopt -s nullglob
    for file in "$CARRY"/piece-* "$CARRY"/SHA256SUMS "$CARRY"/PYTHON_VERSION; do mv "$file" "$STASH/"; done
    ls -l "$STASH"
    ;;
  missing)
    [[ -f $STASH/SHA256SUMS ]] || { echo "dali_wheels: nothing stashed in $STASH" >&2; exit 3; }
    missing_pieces
    ;;
  install)
    [[ -f $STASH/SHA256SUMS ]] || { echo "dali_wheels: nothing stashed in $STASH" >&2; exit 3; }
    missing=$(missing_pieces)
    if [[ -n $missing ]]; then
      echo "dali_wheels: still missing" $missing "(carry them, then run stash)" >&2
      exit 3
    fi
    (cd "$STASH" && sha256sum --quiet -c SHA256SUMS)
    running=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [[ $(cat "$STASH/PYTHON_VERSION") != "$running" ]]; then
      echo "dali_wheels: the pieces hold DALI for Python $(cat "$STASH/PYTHON_VERSION"), this is $running;" \
           "prepare them again with DALI_PYTHON=$running" >&2
      exit 2
    fi
    # Unpacked beside SITE, then renamed: SITE exists only whole (gpu_session.sh tests for it).
    rm -rf "$SITE" "$SITE.partial"
    mkdir -p "$SITE.partial"
    # Python's lzma, not the xz tool, which a bare machine may lack.
    awk '{print $2}' "$STASH/SHA256SUMS" | sed "s|^|$STASH/|" | xargs cat \
      | "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)' \
      | tar -xf - -C "$SITE.partial"
    mv "$SITE.partial" "$SITE"
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import nvidia.dali as d; print('DALI', d.__version__, 'in $SITE')"
    ;;
  *)
    echo "usage: bash benchmarks/dali_wheels.sh prepare | resplit | carry N | stash | missing | install" >&2
    exit 2
    ;;
esac
