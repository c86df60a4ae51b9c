"""The CMake build of the operator library: configure, build, ctest, then load the
built library into a fresh Python and call an op through torch.ops.fastgan."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Runs in its own interpreter: this process may already hold the fastgan namespace
# (registered by fastgan._C), and TORCH_LIBRARY(fastgan) may be registered only once.
LOAD_AND_CALL = textwrap.dedent(
    """
    import sys
    import torch

    torch.ops.load_library(sys.argv[1])
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5)
    w, b = torch.rand(3) + 0.5, torch.randn(3)
    out, mean, var, invstd = torch.ops.fastgan.bn_act_train(x, w, b, 1e-5, 0.2, False)
    bn = torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    want = torch.nn.functional.leaky_relu(bn, 0.2)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    print("fastgan ops load and run")
    """
)


def _run(cmd, cwd, timeout):
    """Runs cmd; on failure the assertion shows its output, which is the useful part."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
    )
    return result.stdout


@pytest.mark.slow
def test_cmake_build_ctest_and_load(tmp_path):
    cmake = shutil.which("cmake")
    ctest = shutil.which("ctest")
    if cmake is None or ctest is None:
        pytest.skip("cmake/ctest not installed")
    if torch.version.cuda is not None and shutil.which("nvcc") is None:
        # torch's CMake config needs the CUDA toolkit for a CUDA torch even with FASTGAN_CUDA=OFF.
        pytest.skip("torch is a CUDA build and no CUDA toolkit (nvcc) is on PATH")

    build = tmp_path / "build"
    _run(
        [
            cmake,
            "-S", ROOT,
            "-B", build,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DFASTGAN_CUDA=OFF",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        ],
        cwd=tmp_path,
        timeout=120,
    )
    _run([cmake, "--build", build, "-j2"], cwd=tmp_path, timeout=600)
    _run([ctest, "--output-on-failure"], cwd=build, timeout=120)

    library = build / "libfastgan_ops.so"
    assert library.is_file(), f"{library} was not built"
    out = _run([sys.executable, "-c", LOAD_AND_CALL, library], cwd=tmp_path, timeout=120)
    assert "fastgan ops load and run" in out, out
