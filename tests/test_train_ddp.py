"""torchrun with 2 gloo processes trains exactly what one process does on the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan import checkpoint
from fastgan.train import main
from train_helpers import TINY_PIX2PIX, final_weights

ROOT = Path(__file__).resolve().parents[1]
# Same global batch of 4; synchronized BatchNorm makes the statistics global too, and
# without dropout nothing depends on per-rank random streams.
COMMON = [*TINY_PIX2PIX, "--model.dropout", "false", "--train.max_steps", "4", "--train.sync_bn", "true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out_dir, *args, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "fastgan.train", *COMMON, "--train.out_dir", str(out_dir), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    proc = torchrun(tmp_path / "ddp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("fastgan: finished") == 1, "only rank 0 may report"
    assert main([*COMMON, "--train.out_dir", str(tmp_path / "single")]) == 0
    ddp, single = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], single[key], atol=1e-4, rtol=1e-3, msg=key)
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "ddp")[0])
    assert len(state["rng"]) == 2, "each rank's random state belongs in the checkpoint"


@pytest.mark.slow
def test_batch_must_divide_over_processes(tmp_path):
    proc = torchrun(tmp_path, "--train.batch_size", "3")
    assert proc.returncode != 0
    assert "train.batch_size (3) must be divisible by the number of processes (2)" in proc.stderr
