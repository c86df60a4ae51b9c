"""BatchNorm2d + LeakyReLU(0.2), training mode: fused vs eager vs torch.compile.

CPU cases are the CPU reference shapes (benchmarks/cases.py) plus one bf16 and one channels_last,
small enough for a 2-core machine; CUDA cases are pix2pix activations at batch 16 and
two shapes large enough to stream from HBM.
"""
from benchmarks.cases import CPU_REFERENCE_SHAPES, LARGE_SHAPES, PIX2PIX_SHAPES, BnCase

CASES = {
    "cpu": [BnCase(s) for s in CPU_REFERENCE_SHAPES]
    + [BnCase((16, 64, 64, 64), "bf16"), BnCase((16, 64, 64, 64), layout="NHWC")],
    "cuda": [BnCase(s) for s in PIX2PIX_SHAPES if s[0] == 16] + [BnCase(s) for s in LARGE_SHAPES]
    + [BnCase((16, 64, 128, 128), "bf16"), BnCase((16, 64, 128, 128), layout="NHWC")],
}
BENCH_PASSES = ("fwd", "fwd_bwd")


def test_bn_act(bench_case, device, case, pass_, impl):
    bench_case(device, case, pass_, impl)
