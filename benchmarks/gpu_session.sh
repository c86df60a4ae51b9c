#!/usr/bin/env bash
# A GPU session: build the CUDA extension, run the CUDA tests, build the inplace_abn peer,
# install DALI, run every benchmark suite, and leave the logs and results in $OUT.
#
#   bash benchmarks/gpu_session.sh                # build, test, peers, dali, bench
#   bash benchmarks/gpu_session.sh bench          # only some steps (a rerun on a warm machine)
#   SESSION_S=300 bash benchmarks/gpu_session.sh  # a tighter ceiling
#   BENCH_SUITES=train,memory,ops bash benchmarks/gpu_session.sh bench  # some suites (default all)
#
# A full session is three calls on one warm machine (the builds and installs stay there), each
# carrying one piece of DALI (benchmarks/README.md, "GPU session"). Whatever the steps, a call
# first stashes a DALI piece carried in .carry/ and, once the stash is whole, installs DALI
# (benchmarks/dali_wheels.sh). The peers step needs .peers/ carried (bash benchmarks/peers.sh
# prepare, here) and is skipped without it.
#
# Every step has its own timeout and the script goes on after a failure. The whole run
# stops by SESSION_S seconds (default 360): the benchmark gets what the earlier steps
# leave. What comes back is at most 7 files (the device tool returns 8): session.log
# (every step's output and a summary), build.log, and results/ with the run's JSON,
# README.md and three PNGs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastgan-gpu-session}
SESSION_S=${SESSION_S:-360}
STEPS=${*:-build test peers dali bench}
BENCH_SUITES=${BENCH_SUITES:-all}
PY=${PYTHON:-python3}
mkdir -p "$OUT/results"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# inplace_abn built by an earlier `peers` step on this (warm) machine, if any.
export PEER_SITE=${PEER_SITE:-/tmp/peer-site}
export PYTHONPATH=$PYTHONPATH:$PEER_SITE
export DALI_SITE=${DALI_SITE:-/tmp/dali-site}
summary=()
# The machine's copy of .git can be stale: unless the caller states the tree's commit, the results
# name that copy's old HEAD (benchmarks/README.md, "GPU session"). `FASTGAN_SOURCE_COMMIT=$H` typed
# into the device command reaches it empty, since $H is not set there.
if [[ ! ${FASTGAN_SOURCE_COMMIT:-} =~ ^[0-9a-f]{7,40}$ ]]; then
  commit_warning="FASTGAN_SOURCE_COMMIT='${FASTGAN_SOURCE_COMMIT:-}' is not a commit hash: the results name this machine's .git HEAD, which may be stale; state the literal hash"
  echo "warning: $commit_warning" | tee -a "$LOG"
  summary+=("commit: $commit_warning")
fi
for step in $STEPS; do
  [[ $step =~ ^(build|test|peers|dali|bench)$ ]] || {
    echo "unknown step '$step'; valid steps: build test peers dali bench" >&2
    exit 2
  }
done

# run_step NAME MAX_SECONDS LOGFILE COMMAND...: at most MAX_SECONDS, never past the session's end.
run_step() {
  local name=$1 limit=$2 logfile=$3 began=$SECONDS rc
  shift 3
  local left=$(( SESSION_S - SECONDS - 10 ))
  (( limit > left )) && limit=$left
  if (( limit < 30 )); then
    summary+=("$name: not run, session time spent")
    return
  fi
  echo "== $name (at most ${limit} s): $*" | tee -a "$LOG"
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$logfile"
  rc=${PIPESTATUS[0]}
  [[ $logfile != "$LOG" ]] && tail -n 40 "$logfile" >> "$LOG"
  summary+=("$name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)') in $(( SECONDS - began )) s")
}

{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  echo "$(nproc) CPUs"
} 2>&1 | tee -a "$LOG"

# DALI arrives one piece per call; the call that completes the stash installs it.
compgen -G ".carry/piece-*" > /dev/null && env PYTHON="$PY" bash benchmarks/dali_wheels.sh stash 2>&1 | tee -a "$LOG"
if [[ ! -d $DALI_SITE && -f .dali-stash/SHA256SUMS ]]; then
  missing=$(bash benchmarks/dali_wheels.sh missing)
  if [[ -z $missing ]]; then
    run_step dali-install 120 "$LOG" env PYTHON="$PY" bash benchmarks/dali_wheels.sh install
  else
    summary+=("dali: still to carry: $(echo $missing); the call that brings the last piece installs DALI")
  fi
fi
[[ -d $DALI_SITE ]] && export PYTHONPATH=$PYTHONPATH:$DALI_SITE

for step in $STEPS; do
  case $step in
    build)
      run_step build 200 "$OUT/build.log" env FASTGAN_CUDA=1 "$PY" setup.py build_ext --inplace
      timeout 120 "$PY" -c "import fastgan.ops as o; print('fastgan backend:', o.backend_info())" 2>&1 | tee -a "$LOG"
      ;;
    test)
      workers=()
      "$PY" -c "import xdist" 2>/dev/null && workers=(-n 4)
      run_step cuda-tests 120 "$LOG" "$PY" -m pytest -m cuda -q -p no:cacheprovider --tb=short "${workers[@]}" tests
      ;;
    peers)
      if [[ -d .peers ]]; then
        # When this call also benchmarks, leave that 4 minutes: the peer rows are worth less than the run.
        limit=$(( SESSION_S - SECONDS ))
        [[ " $STEPS " == *" bench "* ]] && limit=$(( limit - 240 ))
        (( limit > 180 )) && limit=180
        run_step peers "$limit" "$OUT/build.log" env PYTHON="$PY" bash benchmarks/peers.sh install
      else
        summary+=("peers: not run, no .peers/ carried (bash benchmarks/peers.sh prepare, then carry .peers)")
      fi
      ;;
    dali)
      if "$PY" -c "import nvidia.dali" 2>/dev/null; then
        run_step dali-tests 120 "$LOG" "$PY" -m pytest -m cuda -q -p no:cacheprovider --tb=short tests/test_dali.py
      else
        summary+=("dali: not run, DALI not installed ($(ls .dali-stash/piece-* 2>/dev/null | wc -l) pieces stashed)")
      fi
      ;;
    bench)
      left=$(( SESSION_S - SECONDS - 15 ))
      # The budget stops new rows; the margin covers the row in flight, the plots and the tables.
      if (( left - 45 < 30 )); then  # a budget under 30 s (or negative) would still start each suite's first row
        summary+=("bench: not run, session time spent (${left} s left: under the 45 s margin plus 30 s)")
      else
        run_step bench "$left" "$LOG" "$PY" -m benchmarks.run --suite "$BENCH_SUITES" --device cuda \
          --out "$OUT/results" --time-budget $(( left - 45 ))
      fi
      ;;
  esac
done

{
  echo "== summary ($SECONDS s)"
  printf '%s\n' "${summary[@]}"
  ls -l "$OUT/results"
} | tee -a "$LOG"
