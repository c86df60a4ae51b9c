"""The memory suite: the pix2pix discriminator's activation memory in the fused layers'
in-place mode vs their standard mode (and the stock layers, and inplace_abn when installed).

The in-place mode keeps only each BatchNorm+LeakyReLU output for backward and recovers
the input from it, so the conv output feeding the layer can be freed at once. What that
saves shows in two measures: the bytes autograd keeps for backward (counted through
saved-tensor hooks, one count per storage, exact on any device) and, on CUDA, the peak
allocation of one fwd+bwd step. Both come with the step's time, sampled interleaved.
"""
from __future__ import annotations

import statistics

import torch
from torch import nn

from benchmarks.cases import error_reason, peer_impls, peer_module
from benchmarks.session import Session
from benchmarks.timing import Timer

NAME = "memory"
MIB = 2 ** 20
VARIANTS = ("reference", "standard", "in-place")
VARIANT_NOTES = {
    "reference": ("stock BatchNorm2d + LeakyReLU(0.2, inplace=True), as the pix2pix reference builds it "
                  "(fastgan's fused=False)"),
    "standard": "fastgan BatchNormLeakyReLU2d (keeps its input for backward)",
    "in-place": "fastgan BatchNormLeakyReLU2d(inplace=True) (keeps its output, recovers the input from it)",
    "inplace_abn": "inplace_abn.InPlaceABN(leaky_relu 0.2) in every BatchNorm+LeakyReLU slot",
}
SAVED_NOTE = ("MiB of distinct activation storages that autograd keeps for backward during one forward "
              "(saved-tensor hooks; the D's parameters, alike in every variant, left out)")
CUDA_PEAK_NOTE = ("MiB: torch.cuda.max_memory_allocated during one fwd+bwd step above the allocation before it "
                  "(weights and input)")


def plan(device: str, quick: bool) -> list[tuple[int, int]]:
    """(batch, image side) of the 70x70 PatchGAN's input (6 channels: condition + image)."""
    if device == "cuda":
        return [(16, 256), (1, 256)]
    return [(4, 64)] if quick else [(4, 128), (1, 256)]  # a 2-core CPU takes seconds per 16x256^2 step


def variants() -> tuple[str, ...]:
    return VARIANTS + (("inplace_abn",) if "inplace_abn" in peer_impls() else ())


def build_discriminator(variant: str, device: str) -> nn.Module:
    """The 70x70 PatchGAN (ndf 64, n_layers 3) with its BatchNorm+LeakyReLU pairs as `variant` has them
    (its unfused LeakyReLUs work in place, as the reference's do)."""
    from fastgan.models import PatchDiscriminator
    from fastgan.nn import fuse_bn_act

    model = PatchDiscriminator(in_ch=6, ndf=64, n_layers=3, fused=False)
    if variant in ("standard", "in-place"):
        fuse_bn_act(model, inplace=variant == "in-place")
    elif variant == "inplace_abn":
        _swap_in_inplace_abn(model)
    return model.to(device).train()


def _swap_in_inplace_abn(model: nn.Module) -> None:
    layers = model.model
    for index in range(len(layers) - 1):
        if isinstance(layers[index], nn.BatchNorm2d) and isinstance(layers[index + 1], nn.LeakyReLU):
            abn = peer_module("inplace_abn", layers[index].num_features)
            abn.load_state_dict(layers[index].state_dict())
            layers[index], layers[index + 1] = abn, nn.Identity()


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct activation storages autograd saves for backward in one forward of
    `model` (parameters, which every variant keeps alike, are left out)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return sum(storages.values())


def make_step(model: nn.Module, x: torch.Tensor):
    """One fwd+bwd to the D's parameters (autograd.grad: no .grad accumulation in the timing)."""
    params = tuple(model.parameters())

    def step():
        out = model(x)
        return torch.autograd.grad(out, params, torch.ones_like(out))
    return step


def cuda_peak_bytes(step) -> int:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _row(batch: int, side: int, variant: str, status: str = "ok", note: str | None = None) -> dict:
    return {"label": f"{batch}x6x{side}x{side}", "batch": batch, "image_size": side, "variant": variant,
            "status": status, "note": note, "saved_mib": None, "peak_mib": None, "median_ms": None,
            "samples_ms": None, "saved_vs_standard": None, "peak_vs_standard": None}


def measure_case(batch: int, side: int, device: str, timer: Timer) -> list[dict]:
    """Every variant's memory one at a time (peaks must not overlap), then their times interleaved."""
    rows = {variant: _row(batch, side, variant) for variant in variants()}
    x = torch.randn(batch, 6, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    steps = {}
    for variant, row in rows.items():
        try:
            model = build_discriminator(variant, device)
            row["saved_mib"] = saved_bytes(model, x) / MIB
            step = make_step(model, x)
            step()
            if device == "cuda":
                row["peak_mib"] = cuda_peak_bytes(step) / MIB
            steps[variant] = (step, *timer.calibrate(step))
        except Exception as exc:
            row.update(status="error", note=error_reason(exc))
    samples, errors = timer.interleave(steps) if steps else ({}, {})
    for variant, exc in errors.items():
        rows[variant].update(status="error", note=error_reason(exc))
    for variant, variant_samples in samples.items():
        rows[variant].update(median_ms=statistics.median(variant_samples) * 1e3,
                             samples_ms=[s * 1e3 for s in variant_samples])
    standard = rows["standard"]
    for row in rows.values():
        for key in ("saved", "peak"):
            ours, base = row[f"{key}_mib"], standard[f"{key}_mib"]
            row[f"{key}_vs_standard"] = ours / base if ours is not None and base else None
    return list(rows.values())


def _progress(row: dict) -> str:
    head = f"memory {row['label']:<16} {row['variant']:<12}"
    if row["status"] != "ok":
        return f"{head} {row['note']}"
    peak = f"  peak {row['peak_mib']:8.1f} MiB" if row["peak_mib"] is not None else ""
    ratio = row["saved_vs_standard"]  # None when the standard variant itself failed
    versus = f" ({ratio:.2f}x standard)" if ratio is not None else ""
    return f"{head} saved {row['saved_mib']:8.1f} MiB{versus}{peak}  {row['median_ms']:8.2f} ms fwd+bwd"


def run(session: Session, device: str, quick: bool, deadline: float) -> None:
    section = session.result["memory"] = {
        "model": "pix2pix 70x70 PatchGAN (in 6 channels, ndf 64, n_layers 3), training mode, fp32 NCHW",
        "variants": {variant: VARIANT_NOTES[variant] for variant in variants()},
        "saved": SAVED_NOTE, "peak": CUDA_PEAK_NOTE if device == "cuda" else "n/a (CPU)", "rows": []}
    timer = Timer.for_device(device, quick)
    cases = plan(device, quick)
    for index, (batch, side) in enumerate(cases):
        if not session.may_start(index, deadline):
            section["rows"] += [_row(b, s, v, "skipped", session.skip_note(deadline))
                                for b, s in cases[index:] for v in variants()]
            break
        for row in measure_case(batch, side, device, timer):
            section["rows"].append(row)
            session.log(_progress(row))
        session.save()
        if device == "cuda":
            torch.cuda.empty_cache()
