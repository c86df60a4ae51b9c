#!/usr/bin/env bash
# docs/adversarial.md's experiment: pix2pix on the embedded edges->photo data with
# (a) reconstruction loss only and (b) reconstruction + adversarial loss, both scored
# on the held-out test photograph. Usage: bash scripts/adversarial_experiment.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/adversarial_experiment}
for run in rec_only:configs/default_rec_only.yaml adversarial:configs/default.yaml; do
    name=${run%%:*}
    config=${run#*:}
    "$PY" -m fastgan.train --config "$config" --train.out_dir "$OUT/$name" --train.progress false
    last=$(ls "$OUT/$name"/ckpt_*.pt | sort | tail -1)
    "$PY" -m fastgan.evaluate --checkpoint "$last" --data default --split test --json "$OUT/$name.json"
done
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
keys = ["l1", "psnr", "ssim", "sharpness_output", "sharpness_target"]
print("| run | " + " | ".join(keys) + " |")
print("| --- |" + " --- |" * len(keys))
for name in ("rec_only", "adversarial"):
    scores = json.loads((out / f"{name}.json").read_text())
    print(f"| {name} | " + " | ".join(f"{scores[k]:.4g}" for k in keys) + " |")
PY
