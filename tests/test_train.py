"""The trainer end to end on CPU: every family trains, resume is exact, failures are clean."""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastgan import checkpoint
from fastgan.train import main
from train_helpers import (TINY_PIX2PIX, TINY_SRGAN, final_weights, loss_trace, metric_records, tiny_dcgan,
                           write_aligned, write_family_images, write_images)

ROOT = Path(__file__).resolve().parents[1]


def train(out_dir, *args) -> int:
    return main([*TINY_PIX2PIX, "--train.out_dir", str(out_dir), *args])


def test_pix2pix_trains_and_leaves_outputs(tmp_path):
    assert train(tmp_path, "--train.max_steps", "6", "--train.sample_every", "3") == 0
    for key in ("loss_D", "loss_G", "loss_rec"):
        trace = loss_trace(tmp_path, key)
        assert len(trace) == 6 and all(math.isfinite(v) for v in trace)
        assert len(set(trace)) > 1, f"{key} never changed: {trace}"
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000006.pt"]
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "ckpt_00000006.pt").read_bytes()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert list((tmp_path / "tensorboard").iterdir())
    records = metric_records(tmp_path)
    assert any("val_l1" in r for r in records) and records[-1]["summary"] and records[-1]["result"] == "finished"
    state = checkpoint.load(tmp_path / "ckpt_00000006.pt")
    assert state["family"] == "pix2pix" and state["step"] == 6 and state["batch"] == 6 and state["epoch"] == 0


@pytest.mark.parametrize("family", ["dcgan", "conditional"])
def test_noise_families_train(tmp_path, family):
    data = tmp_path / "data"
    write_family_images(data, family, 16)
    out = tmp_path / "run"
    assert main([*tiny_dcgan(data, family), "--train.out_dir", str(out), "--train.max_steps", "5"]) == 0
    for key in ("loss_D", "loss_G"):
        trace = loss_trace(out, key)
        assert len(trace) == 5 and all(math.isfinite(v) for v in trace) and len(set(trace)) > 1


def test_more_classes_in_the_data_than_the_model_fails_at_start_up(tmp_path, capsys):
    """The models check label values on CPU only (no host sync per forward on a GPU): the trainer
    checks the data's classes against model.num_classes once, before any step."""
    for name in ("cats", "dogs", "owls"):
        write_images(tmp_path / "data" / name, 4)
    assert main([*tiny_dcgan(tmp_path / "data", "conditional"), "--train.out_dir", str(tmp_path / "run")]) == 2
    assert ("fastgan.train: error: the training data's labels run from 0 to 2, but model.num_classes is 2: pass "
            "--model.num_classes 3") in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("*.pt"))


def test_reconstruction_only_skips_the_discriminator(tmp_path):
    assert train(tmp_path, "--train.max_steps", "3", "--loss.lambda_adv", "0") == 0
    records = [r for r in metric_records(tmp_path) if "loss_G" in r and not r.get("summary")]
    assert records and all("loss_D" not in r for r in records)
    d_before = checkpoint.load(tmp_path / "ckpt_00000003.pt")["optimizers"]["D"]["state"]
    assert d_before == {}, "the discriminator's optimizer took a step"


@pytest.mark.parametrize("split", [3, 5])
def test_resume_is_bit_exact(tmp_path, split):
    """N steps + resume + M steps == N + M uninterrupted steps, bit for bit (dropout and all)."""
    assert train(tmp_path / "straight", "--train.max_steps", "8") == 0
    assert train(tmp_path / "split", "--train.max_steps", str(split)) == 0
    assert train(tmp_path / "split", "--train.max_steps", "8", "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = checkpoint.load(tmp_path / "straight" / "ckpt_00000008.pt")
    sb = checkpoint.load(tmp_path / "split" / "ckpt_00000008.pt")
    for role in ("G", "D"):
        for pa, pb in zip(sa["optimizers"][role]["state"].values(), sb["optimizers"][role]["state"].values()):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    steps = [r["step"] for r in metric_records(tmp_path / "split") if "loss_G" in r and not r.get("summary")]
    assert steps == list(range(1, 9)), "metrics.jsonl lost or repeated steps across the resume"


def tensorboard_steps(out_dir, tag: str) -> list[int]:
    """The steps TensorBoard shows for `tag`, after it applies the run's purges (as its UI does)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(Path(out_dir) / "tensorboard"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_tensorboard_keeps_the_step_a_resume_starts_from(tmp_path):
    """The resumed checkpoint's own step was logged before it was written: a resume purges only what
    came after it, so TensorBoard shows every step once, as metrics.jsonl does."""
    assert train(tmp_path, "--train.max_steps", "3") == 0
    assert train(tmp_path, "--train.max_steps", "6", "--train.resume", "auto") == 0
    assert tensorboard_steps(tmp_path, "loss_G") == [1, 2, 3, 4, 5, 6]
    assert tensorboard_steps(tmp_path, "val_l1") == [3, 6]


def test_a_resume_under_another_process_count_does_not_replay_the_first_steps_noise(tmp_path, capsys):
    """The checkpoint's random states are per process, so another process count reseeds. Reseeding
    with the start-up seed replayed the run's first dropout masks and noise after the resume point."""
    assert train(tmp_path / "fresh", "--train.max_steps", "2") == 0
    assert train(tmp_path / "run", "--train.max_steps", "2") == 0
    path = tmp_path / "run" / "ckpt_00000002.pt"
    state = checkpoint.load(path)
    state["rng"] = state["rng"] * 2  # as written by 2 processes
    torch.save(state, path)
    assert train(tmp_path / "run", "--train.max_steps", "4", "--train.resume", "auto") == 0
    assert "random streams are reseeded" in capsys.readouterr().out
    replayed = checkpoint.load(tmp_path / "fresh" / "ckpt_00000002.pt")["rng"][0]["torch"]
    assert not torch.equal(checkpoint.load(tmp_path / "run" / "ckpt_00000004.pt")["rng"][0]["torch"], replayed)


def test_resuming_a_finished_run_adds_no_second_validation(tmp_path):
    """A job script that always passes --train.resume auto, run again after the run finished: nothing is
    left to train, so the checkpoint it resumed is the run's end; validating and writing it again
    logged a second val record (and TensorBoard point) at the same step."""
    assert train(tmp_path, "--train.max_steps", "3") == 0
    written = (tmp_path / "ckpt_00000003.pt").stat().st_mtime_ns
    assert train(tmp_path, "--train.max_steps", "3", "--train.resume", "auto") == 0
    assert [r["step"] for r in metric_records(tmp_path) if "val_l1" in r] == [3]
    assert tensorboard_steps(tmp_path, "val_l1") == [3]
    assert (tmp_path / "ckpt_00000003.pt").stat().st_mtime_ns == written


def test_resume_across_an_epoch_boundary(tmp_path):
    """The data position survives: an epoch ends mid-run, on both sides of the resume."""
    common = ["--train.batch_size", "8", "--optim.epochs", "3"]
    from fastgan.data import DefaultEdges2Photo
    steps_per_epoch = len(DefaultEdges2Photo("train", image_size=32)) // 8
    assert train(tmp_path / "straight", *common, "--train.max_steps", str(steps_per_epoch + 2)) == 0
    assert train(tmp_path / "split", *common, "--train.max_steps", str(steps_per_epoch - 1)) == 0
    assert train(tmp_path / "split", *common, "--train.max_steps", str(steps_per_epoch + 2),
                 "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = checkpoint.load(checkpoint.list_checkpoints(tmp_path / "split")[0])
    assert (state["epoch"], state["batch"]) == (1, 2)


def test_corrupt_newest_checkpoint_falls_back(tmp_path):
    assert train(tmp_path, "--train.max_steps", "2", "--train.ckpt_every", "1") == 0
    newest = checkpoint.list_checkpoints(tmp_path)[0]
    assert newest.name == "ckpt_00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn write
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*ckpt_00000002.pt"):
        state, path = checkpoint.load_latest(tmp_path)
    assert path.name == "ckpt_00000001.pt" and state["step"] == 1
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert train(tmp_path, "--train.max_steps", "3", "--train.resume", "auto") == 0
    assert checkpoint.load(checkpoint.list_checkpoints(tmp_path)[0])["step"] == 3


def test_resume_auto_with_no_readable_checkpoint_is_an_error_that_keeps_the_run(tmp_path, capsys):
    """Every checkpoint torn: --train.resume auto must not start the run over in its folder (which set
    its checkpoints aside and cut metrics.jsonl down to nothing); it stops, naming the folder."""
    assert train(tmp_path, "--train.max_steps", "2", "--train.ckpt_every", "1") == 0
    for path in checkpoint.list_checkpoints(tmp_path):
        path.write_bytes(path.read_bytes()[:1000])
    metrics = (tmp_path / "metrics.jsonl").read_text()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        assert train(tmp_path, "--train.max_steps", "3", "--train.resume", "auto") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastgan.train: error: --train.resume auto: none of the 2 checkpoints in {tmp_path} "
                          f"loads") and err.count("\n") == 1
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000002.pt", "ckpt_00000001.pt"]


def test_out_of_memory_while_loading_is_not_a_torn_checkpoint(tmp_path, monkeypatch):
    """Running out of memory (a GPU map_location, say) says nothing about the file: resume auto must not
    skip the newest checkpoint for an older one, or past all of them to a fresh start."""
    assert train(tmp_path, "--train.max_steps", "2", "--train.ckpt_every", "1") == 0

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(checkpoint.torch, "load", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        checkpoint.load_latest(tmp_path)


def test_checkpoints_past_step_99999999_are_listed_pruned_and_resumed(tmp_path):
    """checkpoint_name pads to 8 digits and grows past them; the listing must see the longer names, or
    a run past 10^8 steps would never prune (the disk fills) and resume auto would go back to step 99999999."""
    for step in (99_999_998, 99_999_999, 100_000_000, 100_000_001):
        checkpoint.save_atomic({"format_version": 1, "models": {}, "step": step},
                               tmp_path / checkpoint.checkpoint_name(step))
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == [
        "ckpt_100000001.pt", "ckpt_100000000.pt", "ckpt_99999999.pt", "ckpt_99999998.pt"]
    assert checkpoint.load_latest(tmp_path)[0]["step"] == 100_000_001
    checkpoint.prune(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_100000000.pt", "ckpt_100000001.pt"]


def test_a_kill_while_writing_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL in the middle of torch.save: the earlier checkpoint still loads, no torn file is visible."""
    script = f"""
import os, signal, torch
from fastgan import checkpoint
checkpoint.save_atomic({{"format_version": 1, "models": {{}}, "step": 1}}, {str(tmp_path)!r} + "/ckpt_00000001.pt")
def torn_save(obj, f):
    f.write(b"PK\\x03\\x04 half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = torn_save
checkpoint.save_atomic({{"format_version": 1, "models": {{}}, "step": 2}}, {str(tmp_path)!r} + "/ckpt_00000002.pt")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env())
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000001.pt"]
    state, _ = checkpoint.load_latest(tmp_path)
    assert state["step"] == 1


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_get_the_permissions_of_any_new_file(tmp_path, umask):
    """The temp file a checkpoint is written through must not leave its private 0600 mode on the
    checkpoint: best.pt is read by others (a group's members, a serving account) as the umask allows."""
    previous = os.umask(umask)
    try:
        checkpoint.save_atomic({"format_version": 1, "models": {}, "step": 1}, tmp_path / "ckpt_00000001.pt")
        checkpoint.copy_atomic(tmp_path / "ckpt_00000001.pt", tmp_path / "best.pt")
    finally:
        os.umask(previous)
    for name in ("ckpt_00000001.pt", "best.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def wait_for_steps(metrics_path: Path, lines: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics_path.exists() and metrics_path.read_text().count("\n") >= lines):
        time.sleep(0.2)


def test_sigterm_checkpoints_and_exits_zero(tmp_path):
    cmd = [sys.executable, "-m", "fastgan.train", *TINY_PIX2PIX, "--train.out_dir", str(tmp_path),
           "--train.max_steps", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_steps(tmp_path / "metrics.jsonl", 2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "stopped by signal" in output and "--train.resume auto" in output
    state, _ = checkpoint.load_latest(tmp_path)
    assert state["reason"] == "stopped by signal" and 2 <= state["step"] < 100000


STARTED_WITH = """
import multiprocessing, sys
if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    from fastgan.train import main
    sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_the_process_group_stops_cleanly_with_spawned_workers(tmp_path, signum):
    """Ctrl-C signals the whole foreground process group, DataLoader workers included. Forked workers
    inherit the trainer's handlers; those started by forkserver (Python 3.14's default on Linux) or
    spawn (macOS) do not, died of it, and the trainer crashed on 'DataLoader worker exited
    unexpectedly' without a checkpoint. Workers leave stop signals to the trainer."""
    script = tmp_path / "start_method.py"
    script.write_text(STARTED_WITH)
    out = tmp_path / "run"
    cmd = [sys.executable, str(script), "forkserver", *TINY_PIX2PIX, "--train.out_dir", str(out),
           "--train.max_steps", "100000", "--data.num_workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    wait_for_steps(out / "metrics.jsonl", 2)
    os.killpg(proc.pid, signum)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "stopped by signal" in output
    state, _ = checkpoint.load_latest(out)
    assert state["reason"] == "stopped by signal" and state["step"] >= 2


def test_a_signal_during_the_epoch_end_stops_the_run_there(tmp_path, monkeypatch, capsys):
    """SIGTERM while the epoch's end is written: the run stops with that checkpoint, not one step
    into the next epoch; the signal handlers are the caller's again when main() returns."""
    from fastgan import train as trainer
    write_aligned(tmp_path / "data", 8)  # 2 steps an epoch at batch 4
    original = trainer.ckpt_io.save_atomic

    def save_then_signal(state, path):
        written = original(state, path)
        if state["reason"] == "epoch end":
            os.kill(os.getpid(), signal.SIGTERM)
        return written

    monkeypatch.setattr(trainer.ckpt_io, "save_atomic", save_then_signal)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.max_steps", "10") == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run")] == ["ckpt_00000002.pt"]
    assert "stopped by signal at step 2" in capsys.readouterr().out
    # A signal during the end of the run's last epoch: the run finished, and says so.
    assert aligned_run(tmp_path / "data", tmp_path / "done", "--train.max_steps", "2") == 0
    out = capsys.readouterr().out
    assert "stopped by signal" not in out and "fastgan: finished: step 2" in out


def test_the_progress_bar_writes_to_a_log_file_rarely(tmp_path, monkeypatch, capsys):
    """Captured output is no terminal, as a batch job's log: the bar refreshes there every
    PROGRESS_FILE_INTERVAL_S at most, not 10 times a second."""
    from fastgan import train as trainer
    clock = iter(range(0, 10**6, 1))  # every look at the clock is a second later
    monkeypatch.setattr("tqdm.std.time", lambda: next(clock))
    assert train(tmp_path, "--train.max_steps", "12", "--train.progress", "true") == 0
    bars = [line for line in capsys.readouterr().out.split("\r") if "step/s" in line or "s/step" in line]
    assert 2 <= len(bars) <= 12 // trainer.PROGRESS_FILE_INTERVAL_S + 3


def test_a_full_disk_stops_the_run_with_one_line_and_the_written_checkpoints_whole(tmp_path, monkeypatch, capsys):
    save_atomic = checkpoint.save_atomic

    def full_after_step_2(obj, path):
        if obj["step"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save_atomic(obj, path)

    monkeypatch.setattr(checkpoint, "save_atomic", full_after_step_2)
    assert train(tmp_path, "--train.max_steps", "6", "--train.ckpt_every", "2") == 3
    err = capsys.readouterr().err
    assert err == (f"fastgan.train: error: cannot write the checkpoint of step 4 into {tmp_path}: No space left on "
                   f"device (at step 4); the checkpoints written before are whole, the newest "
                   f"{tmp_path / 'ckpt_00000002.pt'}: once {tmp_path} can be written again, continue with "
                   f"--train.resume auto\n")
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000002.pt"]
    monkeypatch.undo()
    assert train(tmp_path, "--train.max_steps", "6", "--train.resume", "auto") == 0


def test_a_sample_grid_that_cannot_be_written_stops_the_run_before_any_checkpoint(tmp_path, monkeypatch, capsys):
    from fastgan import train as trainer

    def read_only(picture, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(trainer, "save_image", read_only)
    assert train(tmp_path, "--train.max_steps", "4", "--train.sample_every", "2") == 3
    assert capsys.readouterr().err == (f"fastgan.train: error: cannot write the sample grid of step 2 into "
                                       f"{tmp_path / 'samples'}: Permission denied (at step 2); no checkpoint was "
                                       f"written yet: once {tmp_path} can be written again, start again\n")


def test_a_signal_during_a_step_stops_after_that_step(tmp_path, monkeypatch):
    """SIGTERM while step 3 trains: the run writes step 3's checkpoint and stops, rather than train a
    4th step first (time a batch system's grace period may not have); the batch it had already
    fetched for step 4 is trained after the resume, which stays exact."""
    from fastgan import train as trainer
    original = trainer.train_step

    def signalled_in_step_3(family, nets, optimizers, scalers, autocast, batch, ema, step, watch):
        if step == 2:  # 0-based: the 3rd step
            os.kill(os.getpid(), signal.SIGTERM)
        return original(family, nets, optimizers, scalers, autocast, batch, ema, step, watch)

    monkeypatch.setattr(trainer, "train_step", signalled_in_step_3)
    assert train(tmp_path / "split", "--train.max_steps", "6") == 0
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "split")] == ["ckpt_00000003.pt"]
    monkeypatch.undo()
    assert train(tmp_path / "split", "--train.max_steps", "6", "--train.resume", "auto") == 0
    assert train(tmp_path / "straight", "--train.max_steps", "6") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def finite(path) -> bool:
    models = checkpoint.load(path)["models"]
    return all(torch.isfinite(v).all() for sd in models.values() for v in sd.values() if v.is_floating_point())


def test_nonfinite_loss_writes_no_checkpoint_and_names_the_last_good_one(tmp_path, monkeypatch, capsys):
    """The discriminator has already taken the bad step's update when the generator's loss turns out
    nan, so that state is never written, and the good checkpoints are not rotated out (keep_last)."""
    from fastgan.families import Pix2PixFamily
    original = Pix2PixFamily.g_loss
    calls = {"n": 0}

    def poisoned(self, D, batch, fake):
        loss, logs = original(self, D, batch, fake)
        calls["n"] += 1
        return (loss * float("nan"), logs) if calls["n"] == 3 else (loss, logs)

    monkeypatch.setattr(Pix2PixFamily, "g_loss", poisoned)
    assert train(tmp_path, "--train.max_steps", "10", "--train.ckpt_every", "1", "--train.keep_last", "2") == 1
    out = capsys.readouterr().out
    good = tmp_path / "ckpt_00000002.pt"
    assert (f"non-finite loss: the generator loss is nan at step 2; the state after it may be corrupt, so no "
            f"checkpoint was written; the newest good checkpoint is {good}: resume from it with --train.resume "
            f"{good}") in out
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000002.pt", "ckpt_00000001.pt"]
    assert all(finite(p) for p in checkpoint.list_checkpoints(tmp_path))
    assert train(tmp_path, "--train.max_steps", "4", "--train.resume", str(good)) == 0  # the advice works
    assert checkpoint.load(checkpoint.list_checkpoints(tmp_path)[0])["step"] == 4


def test_diverging_run_writes_no_checkpoint(tmp_path, capsys):
    """A learning rate of 1e30 with the WGAN loss turns the generator's loss nan in the first step."""
    assert train(tmp_path, "--optim.lr", "1e30", "--loss.gan_mode", "wgan") == 1
    out = capsys.readouterr().out
    assert "non-finite loss: the generator loss is nan at step 0" in out
    assert "there is no earlier checkpoint: start again with a lower learning rate" in out
    assert checkpoint.list_checkpoints(tmp_path) == [] and not (tmp_path / "best.pt").exists()


def test_nonfinite_advice_falls_back_to_the_checkpoint_resumed_from(tmp_path, capsys):
    """A run resumed from another folder that diverges before its first save points back at its source."""
    assert train(tmp_path / "a", "--train.max_steps", "1") == 0
    source = tmp_path / "a" / "ckpt_00000001.pt"
    assert train(tmp_path / "b", "--train.resume", str(source), "--train.max_steps", "3", "--optim.lr", "1e30",
                 "--loss.gan_mode", "wgan") == 1
    assert f"the newest good checkpoint is {source}: resume from it" in capsys.readouterr().out
    assert checkpoint.list_checkpoints(tmp_path / "b") == []


def test_nonfinite_weights_are_never_checkpointed(tmp_path, monkeypatch, capsys):
    import fastgan.train as trainer
    original, calls = trainer.train_step, {"n": 0}

    def corrupting(family, *args):
        logs = original(family, *args)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                next(family.models["G"].parameters()).fill_(float("inf"))
        return logs

    monkeypatch.setattr(trainer, "train_step", corrupting)
    assert train(tmp_path, "--train.max_steps", "5", "--train.ckpt_every", "1") == 1
    out = capsys.readouterr().out
    assert ("non-finite weights: the G weights or statistics hold inf or nan at step 2; the state after it may be "
            "corrupt") in out
    assert f"the newest good checkpoint is {tmp_path / 'ckpt_00000001.pt'}" in out
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000001.pt"]
    assert finite(tmp_path / "ckpt_00000001.pt")


def aligned_run(root, out_dir, *args) -> int:
    return main([*TINY_PIX2PIX, "--data.dataset", "aligned", "--data.root", str(root),
                 "--train.out_dir", str(out_dir), "--optim.schedule", "constant", *args])


@pytest.mark.parametrize("why", ["unreadable", "too small"])
def test_an_epoch_without_a_step_is_an_error(tmp_path, capsys, why):
    """Every sample skipped: the trainer stops after the first epoch instead of looping over empty epochs."""
    data, out = tmp_path / "data", tmp_path / "run"
    with pytest.warns(UserWarning, match="skipping"):
        if why == "unreadable":
            data.mkdir()
            for i in range(4):
                (data / f"{i}.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
            code = aligned_run(data, out)
        else:
            write_images(data, 4, size=16)
            code = main(["--model.family", "srresnet", "--data.dataset", "folder", "--data.root", str(data),
                         "--data.crop_size", "24", "--model.scale", "2", "--model.ngf", "8", "--model.num_blocks",
                         "1", "--train.batch_size", "2", "--train.progress", "false", "--train.out_dir", str(out)])
    assert code == 2
    assert (f"fastgan.train: error: epoch 0 trained no step: 4 of its 4 samples from {data} were skipped"
            in capsys.readouterr().err)
    assert checkpoint.list_checkpoints(out) == []


def test_ckpt_every_adds_checkpoints_and_keeps_validation(tmp_path, monkeypatch, capsys):
    """2 steps per epoch, a checkpoint every step, a run that ends mid-epoch: each epoch's end still
    validates, updates best.pt and reports skipped files, and no checkpoint is written twice."""
    write_aligned(tmp_path / "data" / "train", 7)
    (tmp_path / "data" / "train" / "broken.png").write_bytes(b"not a png")
    write_aligned(tmp_path / "data" / "val", 2, seed=1)
    written = []
    save_atomic = checkpoint.save_atomic
    monkeypatch.setattr(checkpoint, "save_atomic", lambda obj, path: written.append(Path(path).name)
                        or save_atomic(obj, path))
    with pytest.warns(UserWarning, match="broken.png"):
        assert aligned_run(tmp_path / "data", tmp_path / "run", "--optim.epochs", "3", "--train.max_steps", "5",
                           "--train.ckpt_every", "1", "--train.keep_last", "10") == 0
    assert written == [checkpoint.checkpoint_name(step) for step in range(1, 6)]
    assert [r["step"] for r in metric_records(tmp_path / "run") if "val_l1" in r] == [2, 4, 5]
    assert (tmp_path / "run" / "best.pt").is_file()
    out = capsys.readouterr().out
    for epoch in (0, 1):
        assert f"fastgan: epoch {epoch}: skipped 1 unreadable sample(s)" in out
    logged = [(r["step"], r["epoch"], r["skipped_samples"]) for r in metric_records(tmp_path / "run")
              if "skipped_samples" in r]
    assert logged[:2] == [(2, 0, 1), (4, 1, 1)]
    reasons = [checkpoint.load(tmp_path / "run" / name)["reason"] for name in written]
    assert reasons == ["periodic", "epoch end", "periodic", "epoch end", "step budget reached"]


def test_resume_refuses_options_that_move_the_data_position(tmp_path, capsys):
    assert train(tmp_path, "--train.max_steps", "2") == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert train(tmp_path, "--train.max_steps", "4", "--train.resume", "auto", "--train.batch_size", "8",
                 "--train.seed", "1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastgan.train: error: resuming ") and "\n" not in err
    assert "train.batch_size: checkpoint 4, now 8; train.seed: checkpoint 0, now 1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_resume_refuses_a_changed_training_set(tmp_path, capsys):
    write_aligned(tmp_path / "data", 8)
    assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.max_steps", "1") == 0
    write_aligned(tmp_path / "extra", 1)
    (tmp_path / "extra" / "000.png").rename(tmp_path / "data" / "new.png")
    assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.max_steps", "2", "--train.resume", "auto") == 2
    assert "training samples: checkpoint 8, now 9" in capsys.readouterr().err


def test_resume_with_safe_changes_keeps_config_json_and_logs_them(tmp_path, capsys):
    assert train(tmp_path, "--train.max_steps", "2") == 0
    original = (tmp_path / "config.json").read_text()
    assert train(tmp_path, "--train.max_steps", "3", "--train.resume", "auto", "--optim.lr", "1e-4",
                 "--train.log_every", "2") == 0
    assert "changed options: optim.lr 0.0002 -> 0.0001, train.max_steps 2 -> 3, train.log_every 1 -> 2" \
        in capsys.readouterr().out
    assert (tmp_path / "config.json").read_text() == original
    changes = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": 2, "changes": {"optim.lr": [2e-4, 1e-4], "train.max_steps": [2, 3],
                                               "train.log_every": [1, 2]}}]
    assert checkpoint.load(tmp_path / "ckpt_00000003.pt")["config"]["optim"]["lr"] == 1e-4


def test_global_batches_do_not_depend_on_the_process_count():
    """Why a resume may change the process count: step b reads the same samples whether 1, 2 or 4
    processes split train.batch_size (only the RNG streams are reseeded, with a note)."""
    from fastgan.data.sampler import ShardedSampler

    def global_batches(world_size: int, start_batch: int = 0) -> list[set[int]]:
        per_rank = 8 // world_size
        ranks = []
        for rank in range(world_size):
            sampler = ShardedSampler(70, per_rank, rank, world_size, seed=3)
            sampler.set_epoch(2, start_batch)
            indices = list(sampler)
            ranks.append([indices[i:i + per_rank] for i in range(0, len(indices), per_rank)])
        return [set().union(*batches) for batches in zip(*ranks)]

    one = global_batches(1)
    assert len(one) == 8 and all(len(b) == 8 for b in one)
    assert global_batches(2) == one and global_batches(4) == one and global_batches(4, start_batch=5) == one[5:]


def test_an_empty_validation_split_means_no_validation(tmp_path, capsys):
    """`fastgan.prepare edges --split 1 0 0` leaves val/ empty: a note, not an error."""
    write_aligned(tmp_path / "data" / "train", 8)
    write_aligned(tmp_path / "data" / "val" / "nested", 2)  # below val/, where no dataset looks
    assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.max_steps", "2") == 0
    assert f"no validation (and no best.pt): {tmp_path / 'data' / 'val'} is missing or holds no images" \
        in capsys.readouterr().out
    assert not any("val_l1" in r for r in metric_records(tmp_path / "run"))
    assert not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.parametrize("layout, message", [
    ("missing", "aligned image folder {root} does not exist or is not a folder"),
    ("empty", "aligned image folder {root} holds no images"),
    ("empty train split", "aligned image folder {root}/train holds no images"),
    ("3 images", "train.batch_size (4) is larger than the training set (3 samples in {root})"),
])
def test_data_problems_are_one_line_errors(tmp_path, capsys, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "empty train split":
        (root / "train").mkdir()
        write_aligned(root / "val", 2)
    if layout == "3 images":
        write_aligned(root, 3)
    assert aligned_run(root, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastgan.train: error: {message.format(root=root)}") and err.count("\n") == 1
    assert checkpoint.list_checkpoints(tmp_path / "run") == []


def test_resume_from_an_unreadable_file_is_one_line_error(tmp_path, capsys):
    torn = tmp_path / "torn.pt"
    torn.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    assert train(tmp_path / "run", "--train.resume", str(torn)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastgan.train: error: --train.resume: {torn} is not a readable checkpoint")
    assert err.count("\n") == 1


def test_fresh_run_never_writes_into_an_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--train.max_steps", "1") == 0
    before = (out / "ckpt_00000001.pt").read_bytes()
    assert train(out, "--train.max_steps", "2") == 0
    assert train(out, "--train.max_steps", "1") == 0
    text = capsys.readouterr().out
    assert f"{out} already holds a run (continue it with --train.resume auto); this fresh run writes to {out}-2" in text
    assert f"writes to {out}-3" in text
    assert (out / "ckpt_00000001.pt").read_bytes() == before
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "run-2")] == ["ckpt_00000002.pt"]


def test_a_folder_with_only_best_pt_still_holds_a_run(tmp_path, capsys):
    """Step checkpoints deleted to save space, best.pt kept: a fresh run in that folder overwrote best.pt
    at its first validation and cut metrics.jsonl to nothing, and resume auto did the same after
    saying there was no checkpoint. The fresh run goes to out-2; resume auto names best.pt."""
    out = tmp_path / "run"
    assert train(out, "--train.max_steps", "2") == 0
    (out / "ckpt_00000002.pt").unlink()
    best, metrics = (out / "best.pt").read_bytes(), (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert train(out, "--train.max_steps", "1", "--train.resume", "auto") == 2
    assert capsys.readouterr().err == (f"fastgan.train: error: --train.resume auto: {out} holds no step checkpoint "
                                       f"but holds best.pt: continue from it with --train.resume {out / 'best.pt'}\n")
    assert train(out, "--train.max_steps", "1") == 0
    assert f"this fresh run writes to {out}-2" in capsys.readouterr().out
    assert (out / "best.pt").read_bytes() == best and (out / "metrics.jsonl").read_text() == metrics


def test_stop_advice_names_the_redirected_folder(tmp_path, monkeypatch, capsys):
    """A second fresh run goes to out-2: stopping it must say how to continue it, not the first run."""
    from fastgan import train as trainer
    out = tmp_path / "run"
    assert train(out, "--train.max_steps", "1") == 0
    monkeypatch.setattr(trainer.StopRequest, "requested", True, raising=False)
    monkeypatch.setattr(trainer.StopRequest, "__init__", lambda self: setattr(self, "previous", {}))
    assert train(out, "--train.max_steps", "5") == 0
    text = capsys.readouterr().out
    assert f"continue with --train.out_dir {out}-2 --train.resume auto" in text
    monkeypatch.undo()
    assert train(out, "--train.max_steps", "3", "--train.out_dir", f"{out}-2", "--train.resume", "auto") == 0
    assert "resumed from" in capsys.readouterr().out and (tmp_path / "run-2" / "ckpt_00000003.pt").exists()


def test_a_stop_mid_epoch_reports_the_samples_skipped_before_it(tmp_path, monkeypatch, capsys):
    """The epoch's end never comes for a stopped run, and its resume counts afresh: the stop reports them."""
    from fastgan import train as trainer
    from fastgan.data.sampler import ShardedSampler
    write_aligned(tmp_path / "data", 8)
    first = sorted((tmp_path / "data").iterdir())[next(iter(ShardedSampler(8, 4, seed=0)))]
    first.write_bytes(b"not a png")  # read by the run's first step
    original = trainer.train_step

    def signalled_in_step_1(family, nets, optimizers, scalers, autocast, batch, ema, step, watch):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(family, nets, optimizers, scalers, autocast, batch, ema, step, watch)

    monkeypatch.setattr(trainer, "train_step", signalled_in_step_1)
    with pytest.warns(UserWarning, match=first.name):
        assert aligned_run(tmp_path / "data", tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "stopped by signal at step 1" in out
    assert "fastgan: epoch 0 until the stop: skipped 1 unreadable sample(s)" in out
    assert {"step": 1, "epoch": 0, "skipped_samples": 1} in metric_records(tmp_path / "run")


def test_resuming_an_earlier_checkpoint_sets_the_later_ones_aside(tmp_path, capsys):
    """Checkpoints of the abandoned continuation are moved, not deleted, and can no longer make pruning
    drop the new ones or --train.resume auto pick them; what it logged after the resumed step (its
    metrics lines, its sample grids) goes with them rather than being dropped or mixed in."""
    assert train(tmp_path, "--train.max_steps", "4", "--train.ckpt_every", "1", "--train.keep_last", "4") == 0
    abandoned_steps = sorted({r["step"] for r in metric_records(tmp_path) if r["step"] > 2})
    assert abandoned_steps and (tmp_path / "samples" / "step_00000004.png").is_file()
    earlier = tmp_path / "earlier.pt"
    (tmp_path / "ckpt_00000002.pt").rename(earlier)
    capsys.readouterr()
    assert train(tmp_path, "--train.max_steps", "3", "--train.keep_last", "1", "--train.resume", str(earlier)) == 0
    aside = tmp_path / "abandoned-after-00000002"
    assert (f"{tmp_path} held 3 checkpoint(s) after step 2, from a run this one does not continue; moved them, "
            f"and what that run logged after step 2, to {aside}") in capsys.readouterr().out
    assert sorted(p.name for p in aside.iterdir()) == ["best.pt", "ckpt_00000003.pt", "ckpt_00000004.pt",
                                                      "metrics.jsonl", "samples"]
    assert sorted({r["step"] for r in metric_records(aside)}) == abandoned_steps
    assert [p.name for p in (aside / "samples").iterdir()] == ["step_00000004.png"]
    assert not (tmp_path / "samples" / "step_00000004.png").exists()
    assert max(r["step"] for r in metric_records(tmp_path)) == 3  # the new timeline's lines only past step 2
    assert checkpoint.load(aside / "best.pt")["step"] == 4  # the abandoned timeline's best model went with it
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000003.pt"]
    assert checkpoint.load((tmp_path / "best.pt"))["step"] == 3
    assert train(tmp_path, "--train.max_steps", "4", "--train.resume", "auto") == 0
    assert "resumed from " + str(tmp_path / "ckpt_00000003.pt") in capsys.readouterr().out


def test_a_failed_write_while_a_resume_trims_metrics_keeps_the_log(tmp_path):
    """A resume rewrites metrics.jsonl without the lines after its checkpoint. Rewritten in place, a
    write that fails half way (the disk full; here a file-size limit) left the log cut short."""
    out = tmp_path / "run"
    assert train(out, "--train.max_steps", "4", "--train.ckpt_every", "1") == 0
    for step in (3, 4):
        (out / checkpoint.checkpoint_name(step)).unlink()
    metrics = (out / "metrics.jsonl").read_text()
    kept = "".join(line + "\n" for line in metrics.splitlines() if json.loads(line)["step"] <= 2)
    script = f"""
import resource, signal, sys
from fastgan.train import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, ({len(kept) // 2}, resource.RLIM_INFINITY))
try:
    main({[*TINY_PIX2PIX, "--train.out_dir", str(out), "--train.max_steps", "5", "--train.resume", "auto"]!r})
except OSError as e:
    sys.exit(f"failed: {{e}}")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert "failed: [Errno 27] File too large" in proc.stderr, proc.stdout + proc.stderr
    assert (out / "metrics.jsonl").read_text() == metrics
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_torn_metrics_line_does_not_block_a_resume(tmp_path):
    assert train(tmp_path, "--train.max_steps", "2") == 0
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0, "loss_D": 0.69')  # a crash in mid-write
    assert train(tmp_path, "--train.max_steps", "3", "--train.resume", "auto") == 0
    steps = [r["step"] for r in metric_records(tmp_path) if "loss_G" in r and not r.get("summary")]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("seed", [-1, 2**32, 2**33])
def test_a_seed_numpy_cannot_take_is_a_config_error(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as stopped:
        train(tmp_path, "--train.seed", str(seed))
    assert stopped.value.code == 2
    assert f"error: train.seed must be in [0, 4294967295] with 1 process(es), got {seed}" in capsys.readouterr().err


def test_a_wrong_init_generator_is_a_one_line_error(tmp_path, capsys):
    assert train(tmp_path / "a", "--train.max_steps", "1") == 0
    ckpt = tmp_path / "a" / "ckpt_00000001.pt"
    capsys.readouterr()
    assert main([*TINY_SRGAN, "--train.out_dir", str(tmp_path / "b"), "--model.init_generator", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastgan.train: error: model.init_generator {ckpt} holds a 'pix2pix' checkpoint")
    assert err.count("\n") == 1


def test_an_out_dir_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert train(tmp_path / "file", "--train.max_steps", "1") == 2
    assert capsys.readouterr().err == f"fastgan.train: error: train.out_dir {tmp_path / 'file'} exists and is not a folder\n"


def test_an_out_dir_nobody_may_write_is_one_line_before_the_data_is_read(tmp_path, capsys, monkeypatch,
                                                                         unwritable_folder):
    out = unwritable_folder / "run"
    monkeypatch.setattr("fastgan.train.build_datasets", lambda cfg: pytest.fail("read the data first"))
    assert train(out, "--train.max_steps", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastgan.train: error: train.out_dir {out}: cannot write into {unwritable_folder}: ")
    assert err.count("\n") == 1


def test_resume_takes_the_data_root_however_it_is_written(tmp_path, monkeypatch):
    write_aligned(tmp_path / "data", 8)
    monkeypatch.chdir(tmp_path)
    assert aligned_run("data", tmp_path / "run", "--train.max_steps", "1") == 0
    assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.max_steps", "2", "--train.resume", "auto") == 0


def test_skipped_steps_do_not_carry_the_run_past_its_epochs(tmp_path):
    """Half the files unreadable: each epoch trains half its steps, so the step budget (epochs x steps
    per epoch) is never reached; the run ends with its epochs, the rate never below 0."""
    write_aligned(tmp_path / "data", 4)
    for name in ("000.png", "001.png"):
        (tmp_path / "data" / name).write_bytes(b"not an image")
    with pytest.warns(UserWarning):
        assert aligned_run(tmp_path / "data", tmp_path / "run", "--train.batch_size", "1", "--optim.schedule", "linear",
                           "--optim.epochs", "1", "--optim.epochs_decay", "1", "--train.val_batches", "0") == 0
    records = metric_records(tmp_path / "run")
    steps = [r for r in records if "lr" in r and not r.get("summary")]
    assert [r["epoch"] for r in steps] == [0, 0, 1, 1] and min(r["lr"] for r in steps) >= 0
    assert checkpoint.load(checkpoint.list_checkpoints(tmp_path / "run")[0])["step"] == 4


def test_the_linear_schedule_never_goes_below_zero():
    from fastgan.config import parse_config
    from fastgan.train import lr_factor
    cfg = parse_config(["--optim.schedule", "linear", "--optim.epochs", "2", "--optim.epochs_decay", "2"])
    assert [lr_factor(cfg, e) for e in range(7)] == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0], abs=1e-12)


def test_split_batch_keeps_every_sample_once_in_order():
    from fastgan.train import split_batch
    batch = {"A": torch.arange(5), "B": torch.arange(5) * 10, "name": list("abcde"), "skipped": 1}
    pieces = split_batch(batch, 2)
    assert [p["name"] for p in pieces] == [["a", "b"], ["c", "d"], ["e"]]
    assert torch.equal(torch.cat([p["B"] for p in pieces]), batch["B"]) and all(p["skipped"] == 1 for p in pieces)
    assert split_batch({"skipped": 3}, 2) == [{"skipped": 3}]


def test_fused_and_stock_layers_train_identically(tmp_path):
    """fused=False swaps in nn.BatchNorm2d + activations; a few steps agree to float tolerance."""
    assert train(tmp_path / "fused", "--train.max_steps", "3", "--model.dropout", "false") == 0
    assert train(tmp_path / "stock", "--train.max_steps", "3", "--model.dropout", "false",
                 "--model.fused", "false") == 0
    a, b = final_weights(tmp_path / "fused"), final_weights(tmp_path / "stock")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-4, rtol=1e-3, msg=key)


@pytest.mark.slow
def test_default_command_runs(tmp_path):
    """The README's first command, `python -m fastgan.train` with no arguments, cut to its first epoch
    (64 steps) so CI stays short: the embedded data, checkpoint, best.pt, samples and summary."""
    proc = subprocess.run([sys.executable, "-m", "fastgan.train", "--train.max_steps", "64",
                           "--train.progress", "false"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fastgan: finished" in proc.stdout
    out = tmp_path / "runs" / "default"
    assert (out / "best.pt").is_file() and list((out / "samples").iterdir())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path, precision):
    assert train(tmp_path, "--train.max_steps", "3", "--train.precision", precision) == 0
    trace = loss_trace(tmp_path, "loss_G")
    assert len(trace) == 3 and all(math.isfinite(v) for v in trace)
    state = checkpoint.load(tmp_path / "ckpt_00000003.pt")
    assert state["config"]["train"]["precision"] == precision
    # fp16 keeps a loss scale per optimizer (saved for resume); bf16 needs none
    assert bool(state["scalers"]["G"]) == (precision == "fp16")


def test_ema_is_kept_resumed_and_used(tmp_path):
    assert train(tmp_path / "straight", "--train.max_steps", "4", "--optim.ema", "0.9") == 0
    assert train(tmp_path / "split", "--train.max_steps", "2", "--optim.ema", "0.9") == 0
    assert train(tmp_path / "split", "--train.max_steps", "4", "--optim.ema", "0.9", "--train.resume", "auto") == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    ema_keys = [k for k in a if k.startswith("G_ema.")]
    assert ema_keys and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], a["G." + k[len("G_ema."):]]) for k in ema_keys), "EMA equals the raw weights"


@pytest.mark.slow
def test_compiled_training_runs(tmp_path):
    assert train(tmp_path, "--train.max_steps", "2", "--train.compile", "true") == 0
    assert len(loss_trace(tmp_path, "loss_G")) == 2


def test_resume_accepts_a_checkpoint_that_predates_a_constructor_argument(tmp_path):
    """A checkpoint whose model_args leave out an argument added later (dcgan's norm) holds the same
    networks as one that spells out its default: the resume goes on, a different value is refused."""
    data, out = tmp_path / "data", tmp_path / "run"
    write_images(data, 16)
    args = [*tiny_dcgan(data), "--train.out_dir", str(out)]
    assert main([*args, "--train.max_steps", "2"]) == 0
    path = out / "ckpt_00000002.pt"
    state = checkpoint.load(path)
    for role in ("G", "D"):
        assert state["model_args"][role].pop("norm") == "batch"
    torch.save(state, path)
    assert main([*args, "--train.max_steps", "4", "--train.resume", "auto"]) == 0
    assert checkpoint.load(out / "ckpt_00000004.pt")["step"] == 4
    assert main([*args, "--train.max_steps", "6", "--train.resume", str(path), "--model.d_norm", "none"]) == 2


def test_loss_watch_reads_its_flags_only_every_n_losses():
    """The watch leaves the GPU alone between checks: a nan is reported at the check, naming its step."""
    from fastgan.train import LossWatch, NonFinite

    watch = LossWatch(every=3)
    watch.add(torch.tensor(1.0), "discriminator", 0)
    watch.add(torch.tensor(float("inf")), "generator", 0)  # not read yet
    with pytest.raises(NonFinite, match="the generator loss is inf") as caught:
        watch.add(torch.tensor(2.0), "discriminator", 1)
    assert caught.value.step == 0 and watch.pending == []
    watch.add(torch.tensor(float("nan"), dtype=torch.bfloat16), "discriminator", 7)
    with pytest.raises(NonFinite, match="the discriminator loss is nan") as caught:
        watch.check()
    assert caught.value.step == 7
    watch.check()  # nothing pending: nothing to report


def test_an_abandoned_timelines_config_changes_go_aside_with_it(tmp_path):
    """A change recorded at a resume after the step resumed from belongs to the abandoned timeline."""
    assert train(tmp_path, "--train.max_steps", "3", "--train.ckpt_every", "1", "--train.keep_last", "4") == 0
    assert train(tmp_path, "--train.max_steps", "4", "--train.ckpt_every", "1", "--train.keep_last", "4",
                 "--train.resume", "auto", "--train.log_every", "2") == 0
    changes = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
    assert [c["step"] for c in changes] == [3]
    earlier = tmp_path / "earlier.pt"
    (tmp_path / "ckpt_00000002.pt").rename(earlier)
    assert train(tmp_path, "--train.max_steps", "3", "--train.resume", str(earlier)) == 0
    moved = (tmp_path / "abandoned-after-00000002" / "config_changes.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in moved] == changes
    kept = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
    assert [c["step"] for c in kept] == [2]  # this timeline's own changes, recorded at its resume


def test_a_change_recorded_at_the_resumed_step_by_the_abandoned_timeline_goes_aside(tmp_path):
    """A resume at step S records its changes at S, but they applied after S: a later resume of S's
    checkpoint does not continue them."""
    assert train(tmp_path, "--train.max_steps", "2", "--train.ckpt_every", "1", "--train.keep_last", "4") == 0
    assert train(tmp_path, "--train.max_steps", "4", "--train.ckpt_every", "1", "--train.keep_last", "4",
                 "--train.resume", "auto", "--train.log_every", "2") == 0
    abandoned = (tmp_path / "config_changes.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in abandoned] == [2]
    earlier = tmp_path / "earlier.pt"
    (tmp_path / "ckpt_00000002.pt").rename(earlier)
    assert train(tmp_path, "--train.max_steps", "3", "--train.ckpt_every", "1", "--train.keep_last", "4",
                 "--train.resume", str(earlier)) == 0
    assert (tmp_path / "abandoned-after-00000002" / "config_changes.jsonl").read_text().splitlines() == abandoned
    kept = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
    assert kept == [{"step": 2, "changes": {"train.max_steps": [2, 3]}}]  # this timeline's own resume only


def test_an_abandoned_timelines_history_survives_a_set_aside_that_failed(tmp_path, monkeypatch):
    """Its logs are moved before its checkpoints: a resume that fails to write them (disk full) leaves the
    checkpoints in place, so the retry sets both aside rather than find nothing to move and trim the lines."""
    assert train(tmp_path, "--train.max_steps", "4", "--train.ckpt_every", "1", "--train.keep_last", "4") == 0
    abandoned_steps = sorted({r["step"] for r in metric_records(tmp_path) if r["step"] > 2})
    earlier = tmp_path / "earlier.pt"
    (tmp_path / "ckpt_00000002.pt").rename(earlier)
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.parent.name.startswith("abandoned-after-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        train(tmp_path, "--train.max_steps", "3", "--train.resume", str(earlier))
    monkeypatch.undo()
    assert train(tmp_path, "--train.max_steps", "3", "--train.resume", str(earlier)) == 0
    (aside,) = [p for p in tmp_path.glob("abandoned-after-*") if (p / "ckpt_00000004.pt").is_file()]
    assert sorted({r["step"] for r in metric_records(aside)}) == abandoned_steps
    assert [p.name for p in (aside / "samples").iterdir()] == ["step_00000004.png"]
