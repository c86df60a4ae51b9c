"""Backend selection (fastgan/ops/_loader.py) and the pure-PyTorch reference fallback.

Import-time behaviour is tested in fresh subprocesses: the backend is chosen once, when
fastgan.ops is first imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fastgan.ops as fops
from fastgan.ops import reference

from conftest import ROOT, assert_close, make_layout


def run_python(code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTGAN_BACKEND", None)
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=180)


# Blocks every compiled backend: the AOT module cannot be imported and a JIT build fails.
BLOCK_COMPILED = """
    import sys, warnings
    sys.modules["fastgan._C"] = None
    import torch.utils.cpp_extension as cpp_extension
    def _no_build(*args, **kwargs):
        raise RuntimeError("no C++ compiler in this test")
    cpp_extension.load = _no_build
"""


def test_backend_info_keys():
    """backend_info() documents which implementation runs and why."""
    info = fops.backend_info()
    assert set(info) == {"backend", "cuda", "path", "reason"}
    assert info["backend"] in ("aot", "jit", "reference")
    assert isinstance(info["cuda"], bool)
    if info["backend"] == "reference":
        assert info["path"] is None and info["reason"]
    else:
        assert info["path"] and os.path.exists(info["path"]) and info["reason"] is None
        assert hasattr(torch.ops.fastgan, "bn_act_train")
    if info["cuda"]:
        assert torch.cuda.is_available()
    assert info == fops.backend_info()  # stable, and a copy each time
    fops.backend_info()["backend"] = "changed"
    assert fops.backend_info() == info


def test_fallback_to_reference_warns_once():
    """No compiled library: backend 'reference', exactly one RuntimeWarning that says why, and
    the operators still compute the right thing without further warnings."""
    result = run_python(BLOCK_COMPILED + """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastgan.ops as fops
        import torch, torch.nn.functional as F, json
        from fastgan.nn import BatchNormLeakyReLU2d, PatchGANLoss
        x = torch.randn(4, 3, 5, 5, requires_grad=True)
        out = BatchNormLeakyReLU2d(3)(x)
        out.sum().backward()
        ref = F.leaky_relu(F.batch_norm(x.detach(), None, None, training=True), 0.2)
        loss = PatchGANLoss("vanilla").discriminator(torch.full((2, 1), 3.0), torch.full((2, 1), -3.0))
        ref_loss = 2 * F.softplus(torch.tensor(-3.0))
    print(json.dumps({
        "info": fops.backend_info(),
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
        "out_ok": bool(torch.allclose(out, ref, atol=1e-5)),
        "grad_ok": bool(x.grad is not None and torch.isfinite(x.grad).all()),
        "loss_ok": bool(torch.allclose(loss, ref_loss, atol=1e-6)),
    }))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["info"]["backend"] == "reference"
    runtime = [msg for cat, msg in report["warnings"] if cat == "RuntimeWarning"]
    assert len(runtime) == 1, report["warnings"]
    assert "reference" in runtime[0]
    assert "aot" in runtime[0] and "jit" in runtime[0] and "no C++ compiler in this test" in runtime[0]
    assert report["info"]["reason"] and "no C++ compiler in this test" in report["info"]["reason"]
    assert report["out_ok"] and report["grad_ok"] and report["loss_ok"]


def test_explicit_reference_backend_is_silent():
    """FASTGAN_BACKEND=reference is a choice, not a failure: no warning."""
    result = run_python("""
    import warnings, json
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import fastgan.ops as fops
    print(json.dumps({"info": fops.backend_info(), "n": len([w for w in caught if w.category is RuntimeWarning])}))
    """, FASTGAN_BACKEND="reference")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["info"]["backend"] == "reference" and report["n"] == 0
    assert report["info"]["reason"] == "FASTGAN_BACKEND=reference"


@pytest.mark.parametrize("value", ["bogus"])
def test_bad_backend_name(value):
    """An unknown FASTGAN_BACKEND fails at import naming the valid choices."""
    result = run_python("import fastgan.ops", FASTGAN_BACKEND=value)
    assert result.returncode != 0
    assert "ValueError" in result.stderr
    assert f"FASTGAN_BACKEND='{value}' is not one of auto, aot, jit, reference" in result.stderr


@pytest.mark.parametrize("forced", ["aot", "jit"])
def test_forced_backend_failure_raises(forced):
    """A forced aot/jit backend that cannot load raises instead of silently falling back."""
    result = run_python(BLOCK_COMPILED + "    import fastgan.ops\n", FASTGAN_BACKEND=forced)
    assert result.returncode != 0
    assert f"FASTGAN_BACKEND={forced} failed" in result.stderr
    if forced == "jit":
        assert "no C++ compiler in this test" in result.stderr


def test_backend_env_is_case_and_space_insensitive():
    """' Reference ' selects the reference backend (users type env vars by hand)."""
    result = run_python("import fastgan.ops as f; print(f.backend_info()['backend'])", FASTGAN_BACKEND=" Reference ")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "reference"


# ---------------------------------------------------------------- the reference implementations


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_reference_forward_matches_eager(dtype, layout):
    """reference.bn_act_train / bn_act_apply = F.batch_norm + leaky_relu."""
    x = make_layout(torch.randn(3, 4, 5, 6, dtype=torch.float64).to(dtype), layout)
    stat = reference.stat_dtype(x)
    w, b = torch.rand(4, dtype=stat) + 0.5, torch.randn(4, dtype=stat)
    out, mean, var = reference.bn_act_train(x, w, b, 1e-5, 0.1)
    xe = x.to(stat)
    ref = F.leaky_relu(F.batch_norm(xe, None, None, w, b, training=True), 0.1)
    assert out.dtype == dtype
    assert_close(out.to(stat), ref, dtype)
    v, m = torch.var_mean(xe, dim=(0, 2, 3), correction=0)
    assert_close(mean, m, stat)
    assert_close(var, v, stat)
    rm, rv = torch.randn(4, dtype=stat), torch.rand(4, dtype=stat) + 0.5
    out = reference.bn_act_apply(x, rm, torch.rsqrt(rv + 1e-5), w, b, 0.1)
    assert_close(out.to(stat), F.leaky_relu(F.batch_norm(xe, rm, rv, w, b, training=False), 0.1), dtype)


@pytest.mark.parametrize("slope,saved_is_output", [(0.0, False), (0.2, False), (0.2, True)],
                         ids=["relu-from_input", "leaky-from_input", "leaky-from_output"])
def test_reference_backward_ops_match_autograd(slope, saved_is_output):
    """reference.bn_act_backward_reduce/_input (the kernels' specification) reproduce eager
    autograd's gradients: training (batch-stat means) and eval (zero means) formulas."""
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.7, -1.2, 1.5, 0.9], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.1, 0.3, -0.2, 0.0], dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    out = F.leaky_relu(F.batch_norm(x, None, None, w, b, training=True, eps=1e-5), slope)
    gx, gw, gb = torch.autograd.grad(out, (x, w, b), g)
    var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    invstd = torch.rsqrt(var + 1e-5)
    saved = out.detach() if saved_is_output else x.detach()
    sum_dz, sum_dz_xhat = reference.bn_act_backward_reduce(g, saved, mean, invstd, w.detach(), b.detach(), slope,
                                                           saved_is_output)
    assert_close(sum_dz, gb)
    assert_close(sum_dz_xhat, gw)
    count = x.numel() // 4
    grad_input = reference.bn_act_backward_input(g, saved, mean, invstd, w.detach(), b.detach(), sum_dz / count,
                                                 sum_dz_xhat / count, slope, saved_is_output)
    assert_close(grad_input, gx)
    # Eval: fixed statistics, zero means.
    out = F.leaky_relu(F.batch_norm(x, mean, var, w, b, training=False, eps=1e-5), slope)
    gx_eval, = torch.autograd.grad(out, x, g)
    zeros = torch.zeros(4, dtype=torch.float64)
    grad_input = reference.bn_act_backward_input(g, out.detach() if saved_is_output else x.detach(), mean, invstd,
                                                 w.detach(), b.detach(), zeros, zeros, slope, saved_is_output)
    assert_close(grad_input, gx_eval)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "wgan"])
def test_reference_losses_match_eager(mode):
    """reference.gan_d_loss / gan_g_loss = the eager compositions of docs/operators.md."""
    real, fake = torch.randn(4, 1, 6, 6) * 3, torch.randn(2, 1, 6, 6) * 3
    t = (0.9, 0.1) if mode in ("vanilla", "lsgan") else (1.0, 0.0)
    if mode == "vanilla":
        d = F.binary_cross_entropy_with_logits(real, torch.full_like(real, t[0])) + \
            F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, t[1]))
        g = F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, t[0]))
    elif mode == "lsgan":
        d = ((real - t[0]) ** 2).mean() + ((fake - t[1]) ** 2).mean()
        g = ((fake - t[0]) ** 2).mean()
    elif mode == "hinge":
        d, g = F.relu(1 - real).mean() + F.relu(1 + fake).mean(), -fake.mean()
    else:
        d, g = fake.mean() - real.mean(), -fake.mean()
    assert_close(reference.gan_d_loss(real, fake, mode, *t), d)
    assert_close(reference.gan_g_loss(fake, mode, t[0]), g)
    assert reference.gan_d_loss(real.bfloat16(), fake.bfloat16(), mode, *t).dtype == torch.float32


def test_a_lock_left_by_a_killed_build_is_removed(tmp_path, capsys):
    """torch waits forever on the lock file of a build that was killed; the build lock removes it."""
    from fastgan.ops._loader import build_lock
    (tmp_path / "lock").write_text("")
    with build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()
    assert f"removing {tmp_path / 'lock'}, left behind by a build that was killed" in capsys.readouterr().err


def test_a_build_waits_for_a_running_one_but_not_for_a_killed_one(tmp_path, capsys):
    """A second process waits (and says so once the wait is longer than a built library's check) while
    another holds the lock; killing the holder, mid-build as a signal would, frees it at once."""
    import signal
    import threading

    from fastgan.ops import _loader
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fastgan.ops._loader import build_lock\n"
         f"with build_lock(__import__('pathlib').Path({str(tmp_path)!r})):\n"
         "    print('held', flush=True)\n    time.sleep(120)\n"],
        env=dict(os.environ, PYTHONPATH=str(ROOT), FASTGAN_BACKEND="reference"),
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "lock").write_text("")  # torch's lock of the build in progress
        entered = threading.Event()

        def second_build():
            with _loader.build_lock(tmp_path):
                entered.set()

        waiter = threading.Thread(target=second_build, daemon=True)
        waiter.start()
        assert not entered.wait(1.0), "entered while another process held the lock"
        assert "another process is building" not in capsys.readouterr().err, "a short wait was reported"
        assert not entered.wait(_loader.QUIET_WAIT_S), "entered while another process held the lock"
        assert f"another process is building the operators in {tmp_path}" in capsys.readouterr().err
        assert (tmp_path / "lock").exists(), "removed the lock of a build still running"
        holder.send_signal(signal.SIGKILL)
        assert entered.wait(10.0), "still waiting after the holder died"
        waiter.join(10.0)
        assert not (tmp_path / "lock").exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_the_jit_build_runs_under_the_lock_in_torchs_build_folder(tmp_path):
    """The JIT loader builds in torch's folder for the extension (TORCH_EXTENSIONS_DIR) with the
    lock held and a stale torch lock already gone."""
    folder = tmp_path / "fastgan_ops_cpu"
    folder.mkdir()
    (folder / "lock").write_text("")  # left by a killed build
    result = run_python("""
    import fcntl, pathlib, sys
    sys.modules["fastgan._C"] = None
    import torch.utils.cpp_extension as cpp_extension
    def fake_load(name, build_directory, **kwargs):
        folder = pathlib.Path(build_directory)
        with open(folder / "fastgan-build.lock") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
            except BlockingIOError:
                held = True
        raise RuntimeError(f"fake build of {name} in {folder}: held={held} stale={(folder / 'lock').exists()}")
    cpp_extension.load = fake_load
    import fastgan.ops
    """, FASTGAN_BACKEND="jit", TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert f"fake build of fastgan_ops_cpu in {folder}: held=True stale=False" in result.stderr, result.stderr


def test_a_filesystem_without_flock_still_builds(tmp_path, monkeypatch, capsys):
    """flock can fail with ENOLCK (some network mounts): the build goes on without the lock, and a
    torch lock file, which it can no longer tell from a live build's, is left alone."""
    import errno
    import fcntl

    from fastgan.ops import _loader

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    (tmp_path / "lock").write_text("")
    entered = False
    with _loader.build_lock(tmp_path):
        entered = True
    assert entered and (tmp_path / "lock").exists()
    assert "building without the build lock ([Errno 37] No locks available)" in capsys.readouterr().err


def _fake_library(path, digest: str | None) -> None:
    """Bytes standing in for a built library: some padding, then the digest where setup.py puts it."""
    from fastgan._build import DIGEST_MARKER
    path.write_bytes(b"\x7fELF" + bytes(1000) + (DIGEST_MARKER + digest.encode() if digest else b"") + bytes(100))


def test_a_library_built_from_other_sources_is_stale(tmp_path):
    """The digest setup.py compiles into the library is compared with the sources beside it."""
    from fastgan._build import sources_digest
    from fastgan.ops._loader import CSRC, stale_reason
    library = tmp_path / "_C.so"
    _fake_library(library, sources_digest(CSRC))
    assert stale_reason(library, CSRC) is None
    _fake_library(library, "0" * 64)
    assert "was built from other sources than those in" in stale_reason(library, CSRC)
    _fake_library(library, None)
    assert "records no source digest" in stale_reason(library, CSRC)


def test_the_digest_follows_every_source_file(tmp_path):
    """A changed, added or renamed source changes the digest; the same tree gives the same one."""
    from fastgan._build import sources_digest
    (tmp_path / "cpu").mkdir()
    (tmp_path / "ops.cpp").write_text("a")
    (tmp_path / "cpu" / "k.cpp").write_text("b")
    first = sources_digest(tmp_path)
    assert sources_digest(tmp_path) == first
    (tmp_path / "cpu" / "k.cpp").write_text("c")
    changed = sources_digest(tmp_path)
    (tmp_path / "cpu" / "k.cpp").rename(tmp_path / "cpu" / "l.cpp")
    renamed = sources_digest(tmp_path)
    (tmp_path / "common.h").write_text("d")
    assert len({first, changed, renamed, sources_digest(tmp_path)}) == 4
    before = sources_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("not a source")
    assert sources_digest(tmp_path) == before


def test_a_prebuilt_library_of_this_checkout_matches_its_sources():
    """An editable install's own build (CI's) is current, so it is what runs, not a JIT rebuild."""
    import importlib.util

    from fastgan.ops._loader import CSRC, stale_reason
    spec = importlib.util.find_spec("fastgan._C")
    if spec is None or not (CSRC / "ops.cpp").is_file():
        pytest.skip("no prebuilt fastgan._C in this checkout (the JIT build serves it)")
    assert stale_reason(Path(spec.origin), CSRC) is None
    assert fops.backend_info()["backend"] == "aot"


def test_an_editable_installs_stale_library_is_refused_before_it_is_loaded(tmp_path, monkeypatch):
    """Loaded, an old library would register old operator schemas for good; it is refused from
    its file, before any import. A library that is not the checkout's own is not checked."""
    import importlib.machinery
    import importlib.util

    from fastgan.ops import _loader
    (tmp_path / "csrc").mkdir()
    (tmp_path / "csrc" / "ops.cpp").write_text("// the checkout's current sources")
    (tmp_path / "fastgan").mkdir()
    library = tmp_path / "fastgan" / "_C.so"
    _fake_library(library, "0" * 64)
    monkeypatch.setattr(_loader, "CSRC", tmp_path / "csrc")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: importlib.machinery.ModuleSpec(name, None, origin=str(library)))
    with pytest.raises(_loader.StaleLibrary, match="was built from other sources.*pip install --no-build-isolation"):
        _loader._load_aot()


def test_auto_says_why_it_passes_over_a_stale_library_and_builds(monkeypatch, capsys):
    from fastgan.ops import _loader

    def stale():
        raise _loader.StaleLibrary("the library was built from other sources")

    monkeypatch.setattr(_loader, "_load_aot", stale)
    monkeypatch.setattr(_loader, "_load_jit", lambda: _loader.BackendInfo("jit", False, path="built.so"))
    monkeypatch.delenv("FASTGAN_BACKEND", raising=False)
    assert _loader.load().backend == "jit"
    assert ("fastgan: not loading the prebuilt operator library: the library was built from other sources"
            in capsys.readouterr().err)


def test_a_killed_builds_ninja_still_running_is_waited_for(tmp_path, capsys):
    """A build's Python process killed alone (SIGKILL, the OOM killer) leaves its ninja running in the
    build folder: the next build waits for that ninja before it removes the lock and builds."""
    import time

    from fastgan.ops._loader import build_lock
    (tmp_path / "lock").write_text("")
    ninja = subprocess.Popen(  # stands in for ninja: a process of that name working in the folder
        [sys.executable, "-c", "import ctypes, sys, time\nctypes.CDLL(None).prctl(15, b'ninja', 0, 0, 0)\n"
         "print('running', flush=True)\ntime.sleep(1.5)\n"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path)
    try:
        assert ninja.stdout.readline().strip() == "running"
        began = time.monotonic()
        with build_lock(tmp_path):
            assert ninja.poll() is not None, "entered while the killed build's ninja still ran"
            assert not (tmp_path / "lock").exists()
        assert time.monotonic() - began < 20, "waited on a process that is not ninja"
        assert f"a killed build's ninja (pid {ninja.pid}) still runs in {tmp_path}" in capsys.readouterr().err
    finally:
        for proc in (ninja, bystander):
            proc.kill()
            proc.wait()
        ninja.stdout.close()
