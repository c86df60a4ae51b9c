"""--train.cuda_graph: a captured step trains exactly as the eager one (GPU only), and the
configurations it cannot capture are refused at start-up, with the reason (everywhere)."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest
import torch

from conftest import HAS_CUDA, assert_close
from fastgan.config import ConfigError, parse_config, validate
from fastgan.cuda_graph import WARMUP_STEPS, GraphedStep
from fastgan.families import build_family
from fastgan.train import LossWatch, NonFinite, main, make_optimizer, train_step
from train_helpers import TINY_PIX2PIX, TINY_SRGAN, final_weights, tiny_dcgan, write_family_images


def cuda_only(test):
    """Marked `cuda` (the GPU session runs pytest -m cuda) and skipped without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")(test))


# No dropout: the eager and the captured run then draw no random numbers and must agree.
GRAPHED_PIX2PIX = [*TINY_PIX2PIX, "--model.dropout", "false", "--train.cuda_graph", "true"]


def _trainer(cfg):
    """The trainer's pieces for one tiny pix2pix on the GPU, from seed 0."""
    torch.manual_seed(0)
    family = build_family(cfg)
    for model in family.models.values():
        model.to("cuda").train()
    D = family.models["D"]
    nets = {"G": family.models["G"], "D": D, "D_plain": D, "D_eager": D}
    optimizers = {role: make_optimizer(m.parameters(), cfg, torch.device("cuda")) for role, m in family.models.items()}
    scalers = {role: torch.amp.GradScaler("cuda", enabled=False) for role in optimizers}
    return family, lambda batch, step, watch: train_step(family, nets, optimizers, scalers, nullcontext, batch,
                                                         None, step, watch), optimizers


def _batches(sizes):
    gen = torch.Generator().manual_seed(1)
    return [{key: (torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1).cuda() for key in ("A", "B")} for n in sizes]


def _train(batches, graphed: bool, lr_at: dict | None = None):
    """Trains on the batches eagerly or through GraphedStep; returns the weights, last logs and the runner."""
    cfg = parse_config(GRAPHED_PIX2PIX)
    family, step_fn, optimizers = _trainer(cfg)
    watch = LossWatch(every=1000)
    runner = GraphedStep(step_fn, watch) if graphed else None
    logs = {}
    for step, batch in enumerate(batches):
        if lr_at and step in lr_at:
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr_at[step]
            if runner is not None:
                runner.invalidate()
        logs = runner(batch, step) if runner is not None else step_fn(batch, step, watch)
    torch.cuda.synchronize()
    watch.check()
    state = {f"{role}.{k}": v.detach().clone() for role, m in family.models.items() for k, v in m.state_dict().items()}
    return state, {k: float(v.detach()) for k, v in logs.items()}, runner


def _assert_same_training(graphed, eager):
    assert graphed[0].keys() == eager[0].keys()
    for key, value in eager[0].items():
        if value.is_floating_point():
            assert_close(graphed[0][key], value, factor=10, msg=key)
        else:  # num_batches_tracked
            assert torch.equal(graphed[0][key], value), key
    assert graphed[1] == pytest.approx(eager[1], rel=1e-4, abs=1e-5)


@cuda_only
def test_replayed_steps_train_as_the_eager_steps():
    batches = _batches([4] * (WARMUP_STEPS + 5))
    graphed = _train(batches, graphed=True)
    assert graphed[2].captures == 1
    _assert_same_training(graphed, _train(batches, graphed=False))


@cuda_only
def test_a_learning_rate_change_recaptures_the_step():
    batches = _batches([4] * (WARMUP_STEPS + 6))
    lr_at = {WARMUP_STEPS + 3: 5e-5}
    graphed = _train(batches, graphed=True, lr_at=lr_at)
    assert graphed[2].captures == 2
    _assert_same_training(graphed, _train(batches, graphed=False, lr_at=lr_at))


@cuda_only
def test_a_short_batch_runs_eagerly_and_the_graph_stays():
    sizes = [4] * (WARMUP_STEPS + 2) + [2] + [4] * 2
    batches = _batches(sizes)
    graphed = _train(batches, graphed=True)
    assert graphed[2].captures == 1
    _assert_same_training(graphed, _train(batches, graphed=False))


@cuda_only
def test_batches_that_change_shape_for_good_are_captured_again():
    batches = _batches([4] * (WARMUP_STEPS + 2) + [2] * 3)
    graphed = _train(batches, graphed=True)
    assert graphed[2].captures == 2
    _assert_same_training(graphed, _train(batches, graphed=False))


@cuda_only
def test_a_nan_loss_in_a_replayed_step_is_reported_with_its_step():
    cfg = parse_config(GRAPHED_PIX2PIX)
    _, step_fn, _ = _trainer(cfg)
    watch = LossWatch(every=1000)
    runner = GraphedStep(step_fn, watch)
    batches = _batches([4] * (WARMUP_STEPS + 3))
    for step, batch in enumerate(batches[:-1]):
        runner(batch, step)
    poisoned = {key: value * float("nan") for key, value in batches[-1].items()}
    runner(poisoned, len(batches) - 1)
    with pytest.raises(NonFinite, match="non-finite loss: the discriminator loss is nan") as caught:
        watch.check()
    assert caught.value.step == len(batches) - 1


@cuda_only
def test_a_step_that_cannot_be_captured_runs_eagerly_with_a_warning():
    cfg = parse_config(GRAPHED_PIX2PIX)
    _, step_fn, _ = _trainer(cfg)

    def reading(batch, step, watch):
        logs = step_fn(batch, step, watch)
        float(logs["loss_D"])  # a host read, which a capture cannot record
        return logs

    runner = GraphedStep(reading, LossWatch(every=1000))
    with pytest.warns(RuntimeWarning, match="could not be captured in a CUDA graph"):
        for step, batch in enumerate(_batches([4] * (WARMUP_STEPS + 3))):
            logs = runner(batch, step)
    assert runner.failed and runner.captures == 0
    assert all(torch.isfinite(v).all() for v in logs.values())


@cuda_only
def test_trainer_runs_captured_steps_and_resumes(tmp_path, capsys):
    args = [*GRAPHED_PIX2PIX, "--train.out_dir", str(tmp_path), "--train.max_steps", "8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fastgan: CUDA graph: 3 eager steps, then the step is captured and replayed" in out
    assert (tmp_path / "ckpt_00000008.pt").is_file()
    assert main([*GRAPHED_PIX2PIX, "--train.out_dir", str(tmp_path), "--train.max_steps", "10",
                 "--train.resume", "auto"]) == 0
    assert (tmp_path / "ckpt_00000010.pt").is_file()


@cuda_only
def test_an_eager_run_resumes_with_captured_steps(tmp_path):
    """The checkpoint's optimizer groups say capturable=False; the resume must turn it on."""
    eager = [*TINY_PIX2PIX, "--model.dropout", "false", "--train.out_dir", str(tmp_path)]
    assert main([*eager, "--train.max_steps", "4"]) == 0
    assert main([*eager, "--train.max_steps", "12", "--train.resume", "auto", "--train.cuda_graph", "true"]) == 0
    assert all(torch.isfinite(w).all() for w in final_weights(tmp_path).values())


@cuda_only
@pytest.mark.parametrize("family", ["dcgan", "conditional", "srgan"])
def test_other_families_train_with_captured_steps(tmp_path, family):
    if family == "srgan":
        args = TINY_SRGAN
    else:
        root = tmp_path / "data"
        write_family_images(root, family, 8)
        args = tiny_dcgan(root, family)
    out = tmp_path / "run"
    assert main([*args, "--train.out_dir", str(out), "--train.max_steps", "8", "--train.cuda_graph", "true"]) == 0
    assert all(torch.isfinite(w).all() for w in final_weights(out).values())


@pytest.mark.parametrize("argv, message", [
    ([*GRAPHED_PIX2PIX, "--optim.n_critic", "2"],
     "train.cuda_graph replays one captured step, but optim.n_critic 2 alternates"),
    ([*GRAPHED_PIX2PIX, "--loss.penalty", "r1"],
     "train.cuda_graph replays one captured step; loss.penalty r1 is not supported"),
    ([*GRAPHED_PIX2PIX, "--train.compile", "true"], "train.cuda_graph and train.compile both take over"),
    (["--model.family", "gancls", "--data.crop_size", "32", "--train.cuda_graph", "true"],
     "gancls picks its mismatched caption pairs with a mask whose size depends on the batch"),
])
def test_steps_that_cannot_be_captured_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_config(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_several_processes_are_refused():
    cfg = parse_config(GRAPHED_PIX2PIX)
    with pytest.raises(ConfigError, match=r"in one process; under torchrun \(2 processes\) DDP's gradient"):
        validate(cfg, world_size=2)


@pytest.mark.skipif(HAS_CUDA, reason="the refusal is for machines without a GPU")
def test_cuda_graph_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    assert main([*GRAPHED_PIX2PIX, "--train.out_dir", str(tmp_path)]) == 2
    assert "fastgan.train: error: train.cuda_graph needs a GPU" in capsys.readouterr().err



# ----------------------------------------------------------------------------- the schedule, on any machine


class _FakeGraphs:
    """Stands in for torch.cuda's streams and graphs so that GraphedStep's schedule (which steps
    run eagerly, which are captured, which replayed) is tested without a GPU. A fake capture runs
    the step function once, as the real one records it; a fake replay runs nothing."""

    def __init__(self, monkeypatch, fail_capture: bool = False):
        self.capturing, self.replays = False, 0
        outer = self

        class Stream:
            def wait_stream(self, other):
                pass

        class Graph:
            def replay(self):
                outer.replays += 1

        @contextmanager
        def graph(_graph, capture_error_mode="global"):
            assert capture_error_mode == "thread_local"
            outer.capturing = True
            try:
                if fail_capture:
                    raise RuntimeError("operation not permitted when stream is capturing\ndetails")
                yield
            finally:
                outer.capturing = False

        for name, value in {"Stream": Stream, "current_stream": Stream, "stream": lambda s: nullcontext(),
                            "synchronize": lambda: None, "CUDAGraph": Graph, "graph": graph}.items():
            monkeypatch.setattr(torch.cuda, name, value)


def _recording_step(calls: list, fakes: _FakeGraphs):
    def step_fn(batch, step, watch):
        calls.append((step, "capture" if fakes.capturing else "eager", batch["A"].shape[0]))
        loss = batch["A"].mean()
        watch.add(loss, "discriminator", step)
        return {"loss_D": loss}
    return step_fn


def test_schedule_warm_up_capture_replay_short_batch_and_new_shape(monkeypatch):
    fakes, calls = _FakeGraphs(monkeypatch), []
    watch = LossWatch(every=1000)
    runner = GraphedStep(_recording_step(calls, fakes), watch)
    sizes = [4, 4, 4, 4, 4, 2, 4, 2, 2, 2]
    for step, n in enumerate(sizes):
        logs = runner({"A": torch.full((n, 3), float(step)), "name": ["x"] * n}, step)
        assert set(logs) == {"loss_D"} and not logs["loss_D"].requires_grad
    assert calls == [(0, "eager", 4), (1, "eager", 4), (2, "eager", 4), (3, "capture", 4), (5, "eager", 2),
                     (7, "eager", 2), (8, "capture", 2)]
    assert runner.captures == 2 and fakes.replays == 5  # steps 3, 4, 6, 8, 9
    assert [step for _, _, step in watch.pending] == list(range(10)), "every step's loss reaches the watch"
    runner.invalidate()
    runner({"A": torch.ones(2, 3)}, 10)
    assert runner.captures == 3, "an invalidated graph is captured again"


def test_a_failed_capture_is_said_once_and_every_later_step_runs_eagerly(monkeypatch):
    fakes, calls = _FakeGraphs(monkeypatch, fail_capture=True), []
    runner = GraphedStep(_recording_step(calls, fakes), LossWatch(every=1000))
    with pytest.warns(RuntimeWarning) as caught:
        for step in range(WARMUP_STEPS + 3):
            runner({"A": torch.ones(4, 3)}, step)
    assert [str(w.message) for w in caught] == [
        "fastgan: the training step could not be captured in a CUDA graph (operation not permitted when stream "
        "is capturing); training goes on without it"]
    assert [mode for _, mode, _ in calls] == ["eager"] * (WARMUP_STEPS + 3)
    assert runner.captures == 0 and fakes.replays == 0
