"""The data suite: loader images/s of the torch DataLoader vs fastgan's DALI loader, and the
share of a pix2pix training step spent waiting for data with each.

Loader rows run pix2pix's input pipeline as the trainer does (decode an A|B JPEG, resize
both halves to 286/256 of the crop, one random crop and flip for both, tensors in [-1, 1],
collate; pinned memory on CUDA) over 2,000 JPEG pairs per size (64 with --quick), 256^2 and
512^2, written from random crops of the embedded photographs, resized, beside their Canny
edges. Both loaders read the same files with the same crops, batch 16, workers or threads =
the CPUs (at most 16).

The data-wait rows train pix2pix (batch 16, the fastgan configuration of the training
suite) from the trainer's own loader (fastgan.train.make_loader) and time, per step, how
long the loop blocks on the next batch and its copy to the device against the whole step,
its stream synchronised at its end so that no wait hides behind queued device work (an upper
bound: the trainer itself does not synchronise every step). On a GPU the timed steps are one
epoch's worth (2,000 files / 16), so they hold one epoch's start in its true proportion; the
wait at that start is also kept apart. The loader's own share of the wait
(next() alone) and the copy's host time (to_device, before the synchronisation) are kept apart,
to tell a slow loader from a slow copy and both from the device work the synchronisation waits
for (on DALI, whose batches are already on the GPU, a slow copy is the loop waiting for the
Python lock that the loader's threads hold). The
same rows then time the loop as the trainer runs it, unsynchronised, fed by the loader against
fed from one batch kept on the device: the loader's cost in the step it does not hide.
"""
from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.cases import error_reason
from benchmarks.machine import cpu_count
from benchmarks.session import Session
from benchmarks.training import TrainCase, build_trainer_step, fastgan_config
from fastgan.config import Config
from fastgan.data import AlignedDataset, DefaultEdges2Photo, canny_edges, collate_skipping
from fastgan.data.dali import DALILoader, dali_import_error
from fastgan.data.default import default_photo_names, load_photo
from fastgan.data.sampler import ShardedSampler
from fastgan.train import make_loader, to_device

NAME = "data"
DATASETS = ("aligned-jpeg", "embedded")
LOADERS = {"torch": "torch DataLoader", "dali": "DALI"}
MAX_WORKERS = 16
BATCH = 16
ASYNC_ROUNDS = 3


def pix2pix_load_size(crop_size: int) -> int:
    """pix2pix's 286 for 256 crops, in proportion for other sizes."""
    return crop_size * 286 // 256


@dataclass(frozen=True)
class LoaderCase:
    """Loader-only throughput over one dataset at one crop size."""

    dataset: str
    workers: int
    crop_size: int = 256
    batch: int = BATCH
    loader: str = "torch"

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {', '.join(LOADERS)}; got {self.loader!r}")

    @property
    def load_size(self) -> int:
        return pix2pix_load_size(self.crop_size)

    @property
    def label(self) -> str:
        workers = f"{self.workers} threads" if self.loader == "dali" else f"{self.workers} workers"
        prefix = "DALI " if self.loader == "dali" else ""
        return f"{prefix}{self.dataset} {self.crop_size}x{self.crop_size} batch {self.batch}, {workers}"

    def as_dict(self) -> dict:
        return {**asdict(self), "load_size": self.load_size, "label": self.label}


@dataclass(frozen=True)
class WaitCase:
    """pix2pix training fed by one loader: how much of each step is spent waiting for data."""

    train: TrainCase
    workers: int
    loader: str = "torch"

    @property
    def label(self) -> str:
        return f"{LOADERS[self.loader]}: {self.train.label}"

    def as_dict(self) -> dict:
        return {**self.train.as_dict(), "loader": LOADERS[self.loader], "workers": self.workers,
                "case": self.train.label, "label": self.label}


def wait_train_case(device: str, quick: bool) -> TrainCase:
    """The issue's pix2pix at batch 16; a reduced stand-in for a CPU smoke run."""
    if device == "cpu" and quick:
        return TrainCase("pix2pix", 64, 4, width=32, stands_for="pix2pix 256x256 batch 16")
    return TrainCase("pix2pix", 256, BATCH)


def plan(device: str, quick: bool) -> list[LoaderCase | WaitCase]:
    """Most important first: the 256^2 loader pair, the data-wait pair, the 512^2 pair, then the
    torch loader without workers and the in-memory set (the loader's own overhead)."""
    workers = min(cpu_count(), MAX_WORKERS)
    train = wait_train_case(device, quick)
    return [LoaderCase("aligned-jpeg", workers), LoaderCase("aligned-jpeg", workers, loader="dali"),
            WaitCase(train, workers), WaitCase(train, workers, loader="dali"),
            LoaderCase("aligned-jpeg", workers, 512), LoaderCase("aligned-jpeg", workers, 512, loader="dali"),
            LoaderCase("aligned-jpeg", 0), LoaderCase("embedded", 0)]


def schedule(device: str, quick: bool) -> dict:
    """Files per size; timed loader batches (one pass over the files in a full run); timed training
    steps (on a GPU's full run one epoch's worth, so that one epoch start falls among them)."""
    return {"files": 64 if quick else 2000, "timed_batches": 8 if quick else 2000 // BATCH,
            "timed_steps": 6 if quick else (2000 // BATCH if device == "cuda" else 10)}


def _write_pair(folder: Path, photos: list[Image.Image], size: int, seed: int, index: int) -> None:
    """One A|B JPEG: a random square crop of a photo resized to size x size (B) beside its Canny edges (A)."""
    rng = np.random.default_rng([seed, index])
    photo = photos[int(rng.integers(len(photos)))]
    shorter = min(photo.size)
    side = int(rng.integers(shorter // 2, shorter + 1))
    left, top = int(rng.integers(photo.width - side + 1)), int(rng.integers(photo.height - side + 1))
    b = np.asarray(photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC))
    a = canny_edges(b, 100, 200, 3, invert=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(folder / f"{index:05d}.jpg", quality=95)


def write_photo_pairs(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """`count` aligned edges|photo JPEGs from the embedded training photos, as the public pix2pix
    datasets store them; written by a thread per CPU (PIL and OpenCV release the GIL)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [load_photo(stem) for stem in default_photo_names("train")]
    with ThreadPoolExecutor(max_workers=cpu_count()) as pool:
        list(pool.map(lambda index: _write_pair(folder, photos, size, seed, index), range(count)))
    return folder


def _sync(device: str) -> None:
    """Waits for the loop's own stream, not the whole device: DALI decoding later batches on its
    streams is work ahead of the loop, not a wait of it."""
    if device == "cuda":
        torch.cuda.current_stream().synchronize()


def timed_batch_count(case: LoaderCase, timed_batches: int) -> int:
    """At least four batches per worker (or DALI thread), so every one of them contributes several."""
    return max(timed_batches, 4 * case.workers)


def _time_batches(batches, skipped: int, device: str) -> dict:
    """Throughput of the batches after the first `skipped`; each batch ends on the device (copied
    there if the loader left it on the host) and synchronised, so both loaders deliver the same."""
    images, begin = 0, None
    for index, batch in enumerate(batches):
        pair = [batch[key].to(device, non_blocking=True) for key in ("A", "B")]
        _sync(device)
        if index == skipped - 1:
            begin = time.perf_counter()
        elif index >= skipped:
            images += pair[0].shape[0]
    seconds = time.perf_counter() - begin
    return {"img_per_s": images / seconds, "images_timed": images, "seconds": seconds, "batches_not_timed": skipped}


def images_per_s(dataset, case: LoaderCase, timed_batches: int, device: str) -> dict:
    """Steady-state torch DataLoader throughput: the first 2 x workers + 1 batches (start-up and what
    was prefetched meanwhile) are not timed."""
    skipped = 2 * case.workers + 1
    count = (skipped + timed_batch_count(case, timed_batches)) * case.batch
    loader = DataLoader(dataset, batch_size=case.batch, sampler=[i % len(dataset) for i in range(count)],
                        num_workers=case.workers, collate_fn=collate_skipping, pin_memory=device == "cuda")
    return _time_batches(loader, skipped, device)


def dali_images_per_s(dataset, case: LoaderCase, timed_batches: int, device: str) -> dict:
    """DALILoader throughput over the same files; a plain index list stands in for the sampler.
    Its first 2 batches (pipeline build) are not timed."""
    skipped = 2
    order = [i % len(dataset) for i in range((skipped + timed_batch_count(case, timed_batches)) * case.batch)]
    loader = DALILoader(dataset, order, case.batch, torch.device(device), num_threads=max(1, case.workers))
    try:
        return _time_batches(loader, skipped, device)
    finally:
        loader.close()


@contextlib.contextmanager
def _timed_handoffs(handoffs: list):
    """Times each take of the DALI loader's runner thread (the handoff of a decoded batch) and notes
    whether a batch was waiting: that part of next() apart from the generator around it, and a
    loader that was behind apart from one that was slow to hand over."""
    from fastgan.data import dali
    original = dali._PipelineRunner.take

    def take(runner):
        ready, begin = len(runner.ready) > 0, time.perf_counter()
        try:
            return original(runner)
        finally:
            handoffs.append((ready, time.perf_counter() - begin))

    dali._PipelineRunner.take = take
    try:
        yield
    finally:
        dali._PipelineRunner.take = original


def data_wait(dataset, case: WaitCase, timed_steps: int, device: str) -> dict:
    """Data wait of pix2pix training fed by the trainer's own loader, measured two ways.

    Synchronised: per step, the time blocked on the next batch and its copy, the loop's stream
    synchronised around it (an upper bound); the wait at the first step of an epoch is also kept
    apart (None when no epoch starts among the timed steps), and on DALI the runner's handoff
    within next() (_timed_handoffs). Asynchronous, as the trainer runs:
    ASYNC_ROUNDS rounds of `timed_steps` steps fed by the loader against as many steps on one batch
    kept on the device, interleaved (which goes first alternates), each timed end to end; the
    loader's cost is the extra time per step, which counts whatever the loader takes from the step
    (host time, the GIL, GPU time of its own) and nothing the step hides. The first 2 x workers + 1
    steps (worker start-up, cuDNN autotuning, prefetched batches) are not timed."""
    config = fastgan_config(device)
    trainer_step = build_trainer_step(case.train, config, device)
    sampler = ShardedSampler(len(dataset), case.train.batch, seed=0)
    cfg = Config()
    cfg.data.num_workers = case.workers
    loader, name, why = make_loader(dataset, sampler, cfg, torch.device(device), config.channels_last, 1,
                                    case.loader, persistent=True)
    if name != case.loader:
        raise RuntimeError(f"make_loader chose {name}: {why}")

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            yield from loader
            epoch += 1

    def fetch() -> dict:
        return to_device(next(stream), torch.device(device), config.channels_last)

    warmup = 2 * case.workers + 1
    per_epoch = len(loader)
    waits, in_loader, in_copy, steps, handoffs = [], [], [], [], []
    stream = batches()
    try:
        with _timed_handoffs(handoffs) if case.loader == "dali" else contextlib.nullcontext():
            for index in range(warmup + timed_steps):
                if index == warmup:
                    handoffs.clear()  # the timed steps' only
                begin = time.perf_counter()
                host_batch = next(stream)
                loaded = time.perf_counter()
                batch = to_device(host_batch, torch.device(device), config.channels_last)
                copied = time.perf_counter()
                _sync(device)
                fed = time.perf_counter()
                trainer_step(batch)
                _sync(device)
                if index >= warmup:
                    waits.append(fed - begin)
                    in_loader.append(loaded - begin)
                    in_copy.append(copied - loaded)
                    steps.append(time.perf_counter() - begin)
        resident = fetch()
        runs = {"fed": lambda: trainer_step(fetch()), "resident": lambda: trainer_step(resident)}
        seconds = dict.fromkeys(runs, 0.0)
        for round_index in range(ASYNC_ROUNDS):
            for kind in ("fed", "resident") if round_index % 2 == 0 else ("resident", "fed"):
                seconds[kind] += _timed_steps(runs[kind], timed_steps, device)
        fed_s, resident_s = seconds["fed"], seconds["resident"]
    finally:
        stream.close()
        if isinstance(loader, DALILoader):
            loader.close()
    async_steps = ASYNC_ROUNDS * timed_steps
    epoch_starts = [wait for index, wait in enumerate(waits, warmup) if index % per_epoch == 0]
    return {"wait_pct": 100 * sum(waits) / sum(steps), "median_wait_ms": statistics.median(waits) * 1e3,
            "median_loader_ms": statistics.median(in_loader) * 1e3, "median_copy_ms": statistics.median(in_copy) * 1e3,
            "median_step_ms": statistics.median(steps) * 1e3, "img_per_s": case.train.batch * len(steps) / sum(steps),
            "epoch_start_wait_ms": epoch_starts[0] * 1e3 if epoch_starts else None, "steps_per_epoch": per_epoch,
            "median_handoff_ms": statistics.median(s for _, s in handoffs) * 1e3 if handoffs else None,
            "ready_at_handoff_pct": 100 * sum(ready for ready, _ in handoffs) / len(handoffs) if handoffs else None,
            "steps_timed": len(steps), "steps_not_timed": warmup, "why": why,
            "async_cost_pct": 100 * max(0.0, fed_s - resident_s) / fed_s,
            "async_step_ms": fed_s / async_steps * 1e3, "async_resident_step_ms": resident_s / async_steps * 1e3,
            "async_steps_timed": async_steps}


def _timed_steps(step: Callable[[], object], count: int, device: str) -> float:
    """Seconds for `count` steps run back to back, as the trainer runs them (no synchronisation between)."""
    _sync(device)
    begin = time.perf_counter()
    for _ in range(count):
        step()
    _sync(device)
    return time.perf_counter() - begin


def _loader_row(case: LoaderCase, files: int, pin_memory: bool, status: str = "ok", note: str | None = None) -> dict:
    return {**case.as_dict(), "loader": LOADERS[case.loader],
            "files": files if case.dataset == "aligned-jpeg" else None, "pin_memory": pin_memory,
            "status": status, "note": note, "img_per_s": None, "x_torch": None}


def _wait_row(case: WaitCase, files: int, status: str = "ok", note: str | None = None) -> dict:
    return {**case.as_dict(), "files": files, "status": status, "note": note, "wait_pct": None,
            "median_wait_ms": None, "median_loader_ms": None, "median_copy_ms": None, "median_step_ms": None,
            "epoch_start_wait_ms": None, "median_handoff_ms": None, "ready_at_handoff_pct": None,
            "img_per_s": None, "async_cost_pct": None, "async_step_ms": None, "async_resident_step_ms": None}


def _empty_row(case, sched: dict, pin_memory: bool, status: str = "ok", note: str | None = None) -> dict:
    if isinstance(case, WaitCase):
        return _wait_row(case, sched["files"], status, note)
    return _loader_row(case, sched["files"], pin_memory, status, note)


def _fill_dali_ratios(rows: list[dict]) -> None:
    """x_torch on each DALI row: its img/s over the torch DataLoader's on the same files and size."""
    torch_rows = {(r["dataset"], r["crop_size"], r["workers"]): r for r in rows
                  if r["loader"] == LOADERS["torch"] and r["status"] == "ok"}
    for row in rows:
        base = torch_rows.get((row["dataset"], row["crop_size"], row["workers"]))
        if row["loader"] == LOADERS["dali"] and row["status"] == "ok" and base:
            row["x_torch"] = row["img_per_s"] / base["img_per_s"]


class Datasets:
    """The suite's datasets, made on first use: JPEG folders per size, the in-memory set."""

    def __init__(self, tmp: Path, files: int, session: Session):
        self.tmp, self.files, self.session = tmp, files, session
        self.folders: dict[int, Path] = {}

    def folder(self, size: int) -> Path:
        if size not in self.folders:
            began = time.perf_counter()
            self.folders[size] = write_photo_pairs(self.tmp / f"aligned-{size}", self.files, size)
            self.session.log(f"data: wrote {self.files} aligned {size}x{size} JPEG pairs in "
                             f"{time.perf_counter() - began:.1f} s")
        return self.folders[size]

    def aligned(self, crop_size: int, load_size: int) -> AlignedDataset:
        return AlignedDataset(self.folder(crop_size), load_size=load_size, crop_size=crop_size, flip=True,
                              train=True)

    def for_case(self, case) -> object:
        if isinstance(case, WaitCase):
            size = case.train.image_size
            return self.aligned(size, pix2pix_load_size(size))
        if case.dataset == "embedded":
            return DefaultEdges2Photo("train", image_size=case.crop_size, samples=min(self.files, 512))
        return self.aligned(case.crop_size, case.load_size)


def _measure(case, dataset, sched: dict, device: str) -> dict:
    if isinstance(case, WaitCase):
        return data_wait(dataset, case, sched["timed_steps"], device)
    if case.loader == "dali":
        return dali_images_per_s(dataset, case, sched["timed_batches"], device)
    return images_per_s(dataset, case, sched["timed_batches"], device)


def _progress(row: dict) -> str:
    if row["status"] != "ok":
        return f"data: {row['label']:<58} {row['note']}"
    if "wait_pct" in row:
        return (f"data: {row['label']:<58} waits {row['wait_pct']:5.2f}% of the step "
                f"({row['median_wait_ms']:.2f} of {row['median_step_ms']:.1f} ms, "
                f"{row['median_loader_ms']:.2f} of it in the loader, {row['median_copy_ms']:.2f} in the copy); "
                f"costs {row['async_cost_pct']:5.2f}% run asynchronously ({row['async_step_ms']:.2f} vs "
                f"{row['async_resident_step_ms']:.2f} ms a step)")
    ratio = f"  {row['x_torch']:.2f}x torch" if row.get("x_torch") else ""
    return f"data: {row['label']:<58} {row['img_per_s']:9.1f} img/s{ratio}"


def _rows_of(section: dict, case) -> list[dict]:
    """The section's list a case's row goes to: data-wait rows apart from loader rows."""
    return section["wait_rows"] if isinstance(case, WaitCase) else section["rows"]


def run(session: Session, device: str, quick: bool, deadline: float) -> None:
    sched = schedule(device, quick)
    pin_memory = device == "cuda"
    section = session.result["data"] = {"schedule": sched, "rows": [], "wait_rows": []}
    cases = plan(device, quick)
    with tempfile.TemporaryDirectory(prefix="fastgan-bench-data-") as tmp:
        datasets = Datasets(Path(tmp), sched["files"], session)
        for index, case in enumerate(cases):
            if not session.may_start(index, deadline):
                note = session.skip_note(deadline)
                for rest in cases[index:]:
                    _rows_of(section, rest).append(_empty_row(rest, sched, pin_memory, "skipped", note))
                session.log(f"data: time budget spent: skipped the remaining {len(cases) - index} cases")
                break
            row = _empty_row(case, sched, pin_memory)
            try:
                if case.loader == "dali" and (reason := dali_import_error()):
                    row.update(status="not available", note=reason)
                else:
                    row.update(_measure(case, datasets.for_case(case), sched, device))
            except Exception as exc:
                row.update(status="error", note=error_reason(exc))
            _rows_of(section, case).append(row)
            _fill_dali_ratios(section["rows"])
            session.log(_progress(row))
            session.save()
