"""One rank of tests/test_sync_bn.py's 2-process gloo run (not a test module itself).

usage: python sync_bn_worker.py RANK WORLD_SIZE PORT OUT_FILE

Each rank builds the same full batches (same seed), takes its share of every batch,
runs SyncBatchNormLeakyReLU2d for a few training steps and saves what it saw.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastgan.nn import SyncBatchNormLeakyReLU2d  # noqa: E402

# name -> (module kwargs, dtype, memory format, per-rank batch sizes)
CONFIGS = {
    "leaky": (dict(negative_slope=0.2), torch.float32, torch.contiguous_format, (3, 3)),
    "relu": (dict(negative_slope=0.0), torch.float32, torch.contiguous_format, (3, 3)),
    "identity": (dict(negative_slope=1.0), torch.float32, torch.contiguous_format, (3, 3)),
    "inplace": (dict(negative_slope=0.1, inplace=True), torch.float32, torch.contiguous_format, (3, 3)),
    "channels_last": (dict(negative_slope=0.2), torch.float32, torch.channels_last, (3, 3)),
    "uneven": (dict(negative_slope=0.2), torch.float32, torch.contiguous_format, (1, 4)),
    "noaffine": (dict(negative_slope=0.2, affine=False, momentum=None), torch.float32, torch.contiguous_format, (2, 2)),
    "float64": (dict(negative_slope=0.2), torch.float64, torch.contiguous_format, (3, 3)),
    "bfloat16": (dict(negative_slope=0.2), torch.bfloat16, torch.contiguous_format, (3, 3)),
}
CHANNELS, HEIGHT, WIDTH, STEPS = 5, 6, 7, 2


def make_module(kwargs, dtype):
    """The initial module every rank (and the single-process reference) starts from."""
    torch.manual_seed(1)
    module = SyncBatchNormLeakyReLU2d(CHANNELS, **kwargs)
    if module.affine:
        with torch.no_grad():
            module.weight.copy_(0.5 + torch.rand(CHANNELS))
            module.bias.copy_(0.3 * torch.randn(CHANNELS))
    return module.to(torch.float64) if dtype == torch.float64 else module


def make_batches(sizes, dtype, memory_format):
    """STEPS full batches (inputs and output gradients), each the concatenation of the ranks' shares."""
    torch.manual_seed(2)
    batches = []
    for step in range(STEPS):
        n = sum(sizes)
        x = (torch.randn(n, CHANNELS, HEIGHT, WIDTH, dtype=torch.float64) * (1 + step) + step).to(dtype)
        g = torch.randn(n, CHANNELS, HEIGHT, WIDTH, dtype=torch.float64).to(dtype)
        batches.append((x.to(memory_format=memory_format), g.to(memory_format=memory_format)))
    return batches


def share(t, sizes, rank):
    start = sum(sizes[:rank])
    return t[start:start + sizes[rank]].contiguous(memory_format=_format(t))


def _format(t):
    return torch.channels_last if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format


def expanded_gradient_clones() -> int:
    """aten::clone calls in the synchronized backward of a gradient expanded by sum()."""
    from torch.profiler import ProfilerActivity, profile
    module = SyncBatchNormLeakyReLU2d(CHANNELS)
    x = torch.randn(3, CHANNELS, HEIGHT, WIDTH, requires_grad=True)
    out = module(x).sum()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.autograd.grad(out, [x, *module.parameters()])
    return sum(e.count for e in prof.key_averages() if e.key == "aten::clone")


def main(rank: int, world_size: int, port: int, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    results = {}
    try:
        for name, (kwargs, dtype, memory_format, sizes) in CONFIGS.items():
            module = make_module(kwargs, dtype)
            steps = []
            for x, g in make_batches(sizes, dtype, memory_format):
                x = share(x, sizes, rank).requires_grad_()
                out = module(x)
                out.backward(share(g, sizes, rank))
                steps.append({"out": out.detach(), "grad": x.grad})
            results[name] = {
                "steps": steps,
                "weight_grad": None if module.weight is None else module.weight.grad,
                "bias_grad": None if module.bias is None else module.bias.grad,
                "running_mean": module.running_mean, "running_var": module.running_var,
                "num_batches_tracked": module.num_batches_tracked,
                "out_is_channels_last": steps[0]["out"].is_contiguous(memory_format=torch.channels_last),
            }
        results["expanded_gradient_clones"] = expanded_gradient_clones()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(results, out_file)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
