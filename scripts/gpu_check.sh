#!/usr/bin/env bash
# One prepared run on a lent GPU machine: build the CUDA kernels, run the CUDA
# self-test and the test suite, then the benchmarks. Everything worth keeping goes
# to $OUT (logs, benchmark JSON + table). Usage: bash scripts/gpu_check.sh [build|test|bench ...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastgan-gpu-out}
mkdir -p "$OUT"
STEPS=${*:-build selftest test bench}
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

for step in $STEPS; do
  start=$(date +%s)
  case $step in
    build)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
      python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/machine.txt"
      FASTGAN_CUDA=1 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
      python3 -c "import fastgan.ops as o; print(o.backend_info())" | tee -a "$OUT/machine.txt"
      ;;
    selftest)
      timeout 120 python3 scripts/cuda_selftest.py 2>&1 | tee "$OUT/selftest.log" | tail -40
      ;;
    test)
      timeout 240 python3 -m pytest -q -n 8 -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log" | tail -40
      ;;
    bench)
      timeout 300 python3 -m benchmarks.run --device cuda --time-budget 240 --out benchmarks/results 2>&1 \
        | tee "$OUT/bench.log" | tail -60
      cp benchmarks/results/*.json benchmarks/results/README.md "$OUT/" 2>/dev/null
      ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
  echo "== $step took $(( $(date +%s) - start )) s"
done
