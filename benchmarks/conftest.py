"""pytest-benchmark plumbing shared by test_bn_act.py and test_gan_loss.py.

A test module declares CASES (per device) and BENCH_PASSES; every (device, case, pass)
becomes one benchmark group holding eager, compiled and fused (and inplace_abn's two
modules for BatchNorm cases when it is installed), so pytest-benchmark's table shows
them side by side. Eager runs first in each group, so the others can record their
speedup over it in extra_info.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.cases import PASSES, error_reason, impls_for, make_step

DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
WARMUP_CALLS = 3
_eager_median_s: dict[str, float] = {}


def pytest_generate_tests(metafunc):
    cases = getattr(metafunc.module, "CASES", None)
    if cases is None or "case" not in metafunc.fixturenames:
        return
    params = []
    for device in DEVICES:
        marks = [pytest.mark.cuda] if device == "cuda" else []
        for case in cases[device]:
            for pass_ in getattr(metafunc.module, "BENCH_PASSES", PASSES):
                for impl in impls_for(case):
                    test_id = f"{device}-{case.label.replace(' ', '-')}-{pass_}-{impl}"
                    params.append(pytest.param(device, case, pass_, impl, id=test_id, marks=marks))
    metafunc.parametrize("device,case,pass_,impl", params)


@pytest.fixture
def bench_case(benchmark):
    """Times one (device, case, pass, impl) and fills extra_info with GB/s and speedup."""

    def run(device, case, pass_, impl):
        group = f"{case.op} {case.label} {pass_} {device}"
        benchmark.group = group
        step = make_step(impl, case, pass_, device)

        def call():
            step()
            if device == "cuda":
                torch.cuda.synchronize()

        try:
            call()  # the compile happens here, outside the timed calls
        except Exception as exc:
            if impl == "compiled":
                pytest.skip(f"compile failed: {error_reason(exc)}")
            raise
        for _ in range(WARMUP_CALLS):
            call()
        benchmark(call)
        if not benchmark.stats:  # --benchmark-disable: a single untimed call
            return
        median = benchmark.stats.stats.median
        nbytes = case.nbytes(pass_)
        benchmark.extra_info.update(bytes=nbytes, gbps=round(nbytes / median / 1e9, 2))
        if impl == "eager":
            _eager_median_s[group] = median
        elif group in _eager_median_s:
            benchmark.extra_info["x_eager"] = round(_eager_median_s[group] / median, 3)

    return run
