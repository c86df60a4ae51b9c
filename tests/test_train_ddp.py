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
from train_helpers import TINY_PIX2PIX, final_weights, tiny_dcgan, write_images

ROOT = Path(__file__).resolve().parents[1]
# Same global batch of 4; synchronized BatchNorm makes the statistics global too, and
# without dropout nothing depends on per-rank random streams.
COMMON = [*TINY_PIX2PIX, "--model.dropout", "false", "--train.max_steps", "4", "--train.sync_bn", "true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out_dir, *args, nproc: int = 2, common=tuple(COMMON)) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "fastgan.train", *common, "--train.out_dir", str(out_dir), *args]
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


def _all_finite_rank(rank: int, port: int, out_dir: str) -> None:
    """One gloo rank: rank 1 alone sees a nan loss; every rank records its verdict."""
    import torch.distributed as dist
    from fastgan.train import all_finite

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    verdict = all_finite(torch.tensor(float("nan") if rank == 1 else 0.5))
    Path(out_dir, f"rank{rank}").write_text(str(verdict))
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_loss_on_one_process_stops_every_process(tmp_path):
    """Without agreement, rank 0 would go on into the gradient all-reduce and wait for rank 1 forever."""
    torch.multiprocessing.spawn(_all_finite_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["False", "False"]


@pytest.mark.slow
def test_batch_must_divide_over_processes(tmp_path):
    proc = torchrun(tmp_path, "--train.batch_size", "3")
    assert proc.returncode != 0
    assert "train.batch_size (3) must be divisible by the number of processes (2)" in proc.stderr


# Small settings per family: the same loop must run every family under torchrun.
SMALL = ["--model.ngf", "8", "--model.ndf", "8", "--train.batch_size", "4", "--train.max_steps", "2",
         "--train.progress", "false", "--train.sample_every", "1000", "--optim.schedule", "constant"]
FAMILY_ARGS = {
    "srgan": ["--model.family", "srgan", "--data.crop_size", "24", "--model.scale", "2", "--model.num_blocks", "1"],
    "gancls": ["--model.family", "gancls", "--data.crop_size", "32", "--data.load_size", "32", "--model.nz", "16",
               "--model.text_dim", "16", "--model.text_embed_dim", "8", "--model.caption_len", "64"],
    "lapgan": ["--model.family", "lapgan", "--data.dataset", "folder", "--data.crop_size", "16",
               "--model.levels", "3", "--model.level", "1", "--model.nz", "16"],
}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["dcgan", "srgan", "gancls", "lapgan"])
def test_every_family_trains_under_torchrun(tmp_path, family):
    images = tmp_path / "images"
    write_images(images, 16)
    if family == "dcgan":
        args = [*tiny_dcgan(images), "--train.max_steps", "2"]
    else:
        args = [*SMALL, *FAMILY_ARGS[family]] + (["--data.root", str(images)] if family == "lapgan" else [])
    proc = torchrun(tmp_path / "run", *args, common=())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "run")[0])
    assert state["family"] == family and state["step"] == 2 and len(state["rng"]) == 2
