"""Discriminator loss fwd+bwd over PatchGAN logit maps: fused PatchGANLoss vs the eager
composition (criterion(real, 1) + criterion(fake, 0), autograd) vs its torch.compile.

These calls are tiny, so they measure per-call overhead: launches and dispatch.
"""
from benchmarks.cases import loss_cases

CASES = {"cpu": loss_cases(ns=(16,)), "cuda": loss_cases()}
BENCH_PASSES = ("fwd_bwd",)


def test_d_loss(bench_case, device, case, pass_, impl):
    bench_case(device, case, pass_, impl)
