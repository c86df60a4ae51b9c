"""The data suite: loader images/s of the torch DataLoader and of fastgan's DALI loader.

The aligned-JPEG rows run pix2pix's input pipeline as the trainer does (decode an A|B
JPEG, resize both halves to 286, one random 256 crop and flip for both, tensors in
[-1, 1], collate, pinned memory on CUDA) over files written from the embedded photos:
the baseline a GPU loader has to beat. The embedded row reads the in-memory default
dataset, so it shows the loader's own overhead with no decoding at all.

The first 2 x workers + 1 batches are not timed: they are worker start-up and the
batches prefetched meanwhile, not throughput. At least 4 x workers batches are timed.
The DALI row reads the same files with the same crops through fastgan.data.dali on the
run's device (its CPU operators on a CPU run); its first 2 batches (pipeline build) are
not timed.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.cases import error_reason
from benchmarks.machine import cpu_count
from benchmarks.session import Session
from fastgan.data import AlignedDataset, DefaultEdges2Photo, collate_skipping
from fastgan.data.dali import dali_import_error

NAME = "data"
DATASETS = ("aligned-jpeg", "embedded")
MAX_WORKERS = 16


@dataclass(frozen=True)
class LoaderCase:
    dataset: str
    workers: int
    batch: int = 16
    load_size: int = 286
    crop_size: int = 256
    loader: str = "torch"

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.loader not in ("torch", "dali"):
            raise ValueError(f"loader must be torch or dali; got {self.loader!r}")

    @property
    def label(self) -> str:
        workers = f"{self.workers} threads" if self.loader == "dali" else f"{self.workers} workers"
        prefix = "DALI " if self.loader == "dali" else ""
        return f"{prefix}{self.dataset} {self.crop_size}x{self.crop_size} batch {self.batch}, {workers}"

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


def plan() -> list[LoaderCase]:
    """Workers = the CPUs (the loader's best case) first, then loading in the training process."""
    workers = min(cpu_count(), MAX_WORKERS)
    return [LoaderCase("aligned-jpeg", workers), LoaderCase("aligned-jpeg", 0), LoaderCase("embedded", 0),
            LoaderCase("aligned-jpeg", workers, loader="dali")]


def schedule(quick: bool) -> dict:
    return {"files": 64 if quick else 256, "timed_batches": 8 if quick else 32}


def write_aligned_jpegs(pairs: DefaultEdges2Photo, folder: Path) -> Path:
    """One A|B JPEG (edges | photo side by side) per pair, as the public pix2pix datasets store them."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(len(pairs)):
        Image.fromarray(np.concatenate([pairs.a[index], pairs.b[index]], axis=1)).save(
            folder / f"{index:05d}.jpg", quality=95)
    return folder


def images_per_s(dataset, case: LoaderCase, timed_batches: int, pin_memory: bool) -> dict:
    """Steady-state loader throughput: at least four batches per worker are timed, so every worker
    contributes several."""
    skipped = 2 * case.workers + 1
    timed_batches = max(timed_batches, 4 * case.workers)
    count = (skipped + timed_batches) * case.batch
    loader = DataLoader(dataset, batch_size=case.batch, sampler=[i % len(dataset) for i in range(count)],
                        num_workers=case.workers, collate_fn=collate_skipping, pin_memory=pin_memory)
    batches = iter(loader)
    for _ in range(skipped):
        next(batches)
    begin = time.perf_counter()
    images = sum(batch["A"].shape[0] for batch in batches)
    seconds = time.perf_counter() - begin
    return {"img_per_s": images / seconds, "images_timed": images, "seconds": seconds, "batches_not_timed": skipped}


def dali_images_per_s(dataset, case: LoaderCase, timed_batches: int, device: str) -> dict:
    """DALILoader throughput over the same files; a plain index list stands in for the sampler."""
    import torch

    from fastgan.data.dali import DALILoader
    skipped = 2
    order = [i % len(dataset) for i in range((skipped + timed_batches) * case.batch)]
    loader = DALILoader(dataset, order, case.batch, torch.device(device), num_threads=max(1, case.workers))
    images, begin = 0, None
    for index, batch in enumerate(loader):
        if device == "cuda":
            torch.cuda.synchronize()
        if index == skipped - 1:
            begin = time.perf_counter()
        elif index >= skipped:
            images += batch["A"].shape[0]
    seconds = time.perf_counter() - begin
    return {"img_per_s": images / seconds, "images_timed": images, "seconds": seconds, "batches_not_timed": skipped}


def _row(case: LoaderCase, files: int, pin_memory: bool, status: str = "ok", note: str | None = None) -> dict:
    name = "torch DataLoader" if case.loader == "torch" else "DALI"
    return {**case.as_dict(), "loader": name, "files": files if case.dataset == "aligned-jpeg" else None,
            "pin_memory": pin_memory, "status": status, "note": note, "img_per_s": None}


def run(session: Session, device: str, quick: bool, deadline: float) -> None:
    sched = schedule(quick)
    pin_memory = device == "cuda"
    section = session.result["data"] = {"schedule": sched, "rows": []}
    cases = plan()
    with tempfile.TemporaryDirectory(prefix="fastgan-bench-data-") as tmp:
        datasets: dict[str, object] = {}
        for index, case in enumerate(cases):
            if not session.may_start(index, deadline):
                note = session.skip_note(deadline)
                section["rows"] += [_row(rest, sched["files"], pin_memory, "skipped", note) for rest in cases[index:]]
                session.log(f"data: time budget spent: skipped the remaining {len(cases) - index} cases")
                break
            row = _row(case, sched["files"], pin_memory)
            try:
                if case.loader == "dali" and (reason := dali_import_error()):
                    row.update(status="not available", note=reason)
                    session.log(f"data: {case.label:<44} {reason}")
                    section["rows"].append(row)
                    continue
                if case.dataset not in datasets:
                    _add_datasets(datasets, case, Path(tmp), sched["files"])
                measure = (dali_images_per_s(datasets[case.dataset], case, sched["timed_batches"], device)
                           if case.loader == "dali" else
                           images_per_s(datasets[case.dataset], case, sched["timed_batches"], pin_memory))
                row.update(measure)
                session.log(f"data: {case.label:<44} {row['img_per_s']:9.1f} img/s")
            except Exception as exc:
                row.update(status="error", note=error_reason(exc))
                session.log(f"data: {case.label:<44} {row['note']}")
            section["rows"].append(row)
            session.save()


def _add_datasets(datasets: dict, case: LoaderCase, tmp: Path, files: int) -> None:
    """The embedded pairs at crop size, and the JPEG folder written from them when the case reads files:
    halves at crop size, so the loader resizes up to load_size as with the public datasets."""
    if "embedded" not in datasets:
        datasets["embedded"] = DefaultEdges2Photo("train", image_size=case.crop_size, samples=files)
    if case.dataset == "aligned-jpeg":
        folder = write_aligned_jpegs(datasets["embedded"], tmp / "aligned")
        datasets["aligned-jpeg"] = AlignedDataset(folder, load_size=case.load_size, crop_size=case.crop_size,
                                                  flip=True, train=True)
