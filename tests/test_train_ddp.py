"""torchrun with 2 gloo processes trains exactly what one process does on the same global batch."""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan import checkpoint
from fastgan.train import main
from train_helpers import TINY_PIX2PIX, final_weights, metric_records, tiny_dcgan, write_images

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
@pytest.mark.parametrize("fused", ["true", "false"])
def test_two_gloo_processes_match_one(tmp_path, fused):
    """With sync_bn, fused layers and plain BatchNorm2d (fused false) alike see the global batch."""
    proc = torchrun(tmp_path / "ddp", "--model.fused", fused)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("fastgan: finished") == 1, "only rank 0 may report"
    assert "is deprecated" not in proc.stderr, proc.stderr  # DDP's options as the installed torch names them
    assert main([*COMMON, "--model.fused", fused, "--train.out_dir", str(tmp_path / "single")]) == 0
    ddp, single = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], single[key], atol=1e-4, rtol=1e-3, msg=key)
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "ddp")[0])
    assert len(state["rng"]) == 2, "each rank's random state belongs in the checkpoint"
    # Rank 0 validates the same samples one process does, and the image count sums the ranks.
    records = {run: metric_records(tmp_path / run) for run in ("ddp", "single")}
    val = {run: [r["val_l1"] for r in rs if "val_l1" in r] for run, rs in records.items()}
    assert len(val["ddp"]) == len(val["single"]) > 0
    torch.testing.assert_close(torch.tensor(val["ddp"]), torch.tensor(val["single"]), atol=1e-4, rtol=1e-3)
    images = {run: [r["images"] for r in rs if r.get("summary")] for run, rs in records.items()}
    assert images["ddp"] == images["single"] == [16]


def _loss_watch_rank(rank: int, port: int, out_dir: str) -> None:
    """One gloo rank: rank 1 alone sees a nan loss at step 3; every rank records its verdict."""
    import torch.distributed as dist
    from fastgan.train import LossWatch, NonFinite

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    watch = LossWatch(every=4)
    verdict = "finite"
    try:
        for step in range(4):
            bad = rank == 1 and step == 3
            watch.add(torch.tensor(float("nan") if bad else 0.5), "generator", step)
    except NonFinite as e:
        verdict = f"{e} at step {e.step}"
    Path(out_dir, f"rank{rank}").write_text(verdict)
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_nan_loss_on_one_process_stops_every_process(tmp_path):
    """Without agreement, rank 0 would go on into the gradient all-reduce and wait for rank 1 forever."""
    torch.multiprocessing.spawn(_loss_watch_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == [
        "non-finite loss: the generator loss is not finite on another process at step 3",
        "non-finite loss: the generator loss is nan at step 3"]


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


# ----------------------------------------------------------------------------- gradient penalties

# synchronized BatchNorm has no double backward (the trainer refuses it with a penalty), and
# per-process batch norm would see half the batch: without norm, nothing couples the samples.
PENALTY_COMMON = [*TINY_PIX2PIX, "--model.dropout", "false", "--train.max_steps", "4", "--model.norm", "none"]


@pytest.mark.slow
def test_two_gloo_processes_with_r1_match_one(tmp_path):
    """R1 draws nothing at random, so 2 processes on half batches train exactly what one does: the
    penalty's gradient, taken on the bare module, is averaged by DDP with the loss's."""
    common = [*PENALTY_COMMON, "--loss.penalty", "r1", "--optim.n_critic", "2"]  # G updates skip a batch too
    proc = torchrun(tmp_path / "ddp", common=tuple(common))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fastgan: discriminator loss + 10 x r1 gradient penalty" in proc.stdout
    assert main([*common, "--train.out_dir", str(tmp_path / "single")]) == 0
    ddp, single = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], single[key], atol=1e-4, rtol=1e-3, msg=key)


# Runs the trainer with every rank checking after each step that all ranks hold the same weights.
RANK_CHECK = '''
import sys
import torch
import torch.distributed as dist
import fastgan.train as T

log, argv = sys.argv[1], sys.argv[2:]
step = T.train_step


def checked(family, *args, **kwargs):
    logs = step(family, *args, **kwargs)
    flat = torch.cat([p.detach().reshape(-1) for m in family.models.values() for p in m.parameters()])
    peers = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(peers, flat)
    spread = max((peer - flat).abs().max().item() for peer in peers)
    with open(f"{log}.rank{dist.get_rank()}", "a") as f:
        f.write(f"{spread} {float(logs['loss_D_penalty'])} {float(logs['loss_D'])}\\n")
    return logs


T.train_step = checked
sys.exit(T.main(argv))
'''


@pytest.mark.slow
def test_two_gloo_processes_with_wgan_gp_keep_one_critic(tmp_path):
    """WGAN-GP draws eps per sample from each rank's own stream (seed + rank), so 2 processes cannot
    match 1 exactly. What must hold: DDP averages the penalty's gradients, so every rank holds
    identical weights after every step although each rank's penalty differs."""
    script = tmp_path / "rank_check.py"
    script.write_text(RANK_CHECK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(script), str(tmp_path / "log"), *PENALTY_COMMON, "--loss.penalty", "wgan-gp", "--loss.gan_mode",
           "wgan", "--train.out_dir", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {rank: [list(map(float, line.split())) for line in (tmp_path / f"log.rank{rank}").read_text().splitlines()]
            for rank in (0, 1)}
    assert len(rows[0]) == len(rows[1]) == 4
    for rank, steps in rows.items():
        for spread, penalty, loss in steps:
            assert spread == 0.0, f"rank {rank}: the ranks' weights drifted apart by {spread}"
            assert math.isfinite(penalty) and penalty > 0 and math.isfinite(loss)
    assert [r[1] for r in rows[0]] != [r[1] for r in rows[1]], "each rank penalizes its own samples"
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "ddp")[0])
    assert state["step"] == 4 and len(state["rng"]) == 2


@pytest.mark.slow
def test_penalty_with_synchronized_batch_norm_is_refused(tmp_path):
    proc = torchrun(tmp_path / "run", "--loss.penalty", "wgan-gp")  # COMMON: batch norm, --train.sync_bn true
    assert proc.returncode != 0
    assert ("fastgan.train: error: loss.penalty wgan-gp differentiates the discriminator twice, which synchronized "
            "BatchNorm does not support: drop --train.sync_bn or use model.d_norm layer, instance or none"
            ) in proc.stderr
    assert "exitcode  : 2" in proc.stderr, "the usage error's status"
    assert str(ROOT / "fastgan") not in proc.stderr, "a traceback from the trainer (torchrun prints its own)"
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("*.pt"))
