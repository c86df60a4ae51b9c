"""NVIDIA DALI loading: JPEG/PNG decode, resize, crop, flip and normalize off the Python path.

The loader is a drop-in for the torch DataLoader over fastgan's file datasets: it yields
the same batch dicts in the same dtype and range, visits samples in the sampler's order
(sharded by rank, resumable mid-epoch) and takes every crop offset and flip from the
dataset's own per-sample generator, so DALI and torch crop the same windows; only the
resampling filters differ. Python hands DALI each batch's file paths and crop parameters, a
few batches ahead in a thread of its own; DALI reads the files (fn.io.file.read, on its own
threads: no image byte passes through Python, whose feeding calls hold the GIL) and does the
rest, on the GPU ("mixed" decoder + GPU operators) or, without one, with its CPU operators
(what CI tests); a second thread runs the pipeline, so finished batches wait for the
training loop rather than the loop for them.

A batch DALI cannot read or decode is decoded again by the dataset's torch path, which skips
and counts the unreadable files, so a corrupt or vanished image never ends a run.
"""
from __future__ import annotations

import atexit
import collections
import copy
import math
import os
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import sample_rng
from .collate import collate_skipping
from .datasets import AlignedDataset, ClassFolderDataset, ImageFolderDataset, PairedFolderDataset
from .files import image_size
from .transforms import center_crop_geometry

SUPPORTED = (AlignedDataset, PairedFolderDataset, ImageFolderDataset, ClassFolderDataset)


def dali_import_error() -> str | None:
    """None when DALI imports, else why not (for the trainer's loader choice message)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as e:
        return f"NVIDIA DALI is not installed ({e}); pip install 'fastgan[dali]'"
    return None


def unsupported_reason(dataset) -> str | None:
    if not isinstance(dataset, SUPPORTED):
        return (f"DALI has no pipeline for {type(dataset).__name__}; it reads "
                f"{', '.join(c.__name__ for c in SUPPORTED)}")
    return None


def _paired(dataset) -> bool:
    return isinstance(dataset, (AlignedDataset, PairedFolderDataset))


def _encoded_paths(paths: list[Path]) -> np.ndarray:
    """A batch of paths as fn.io.file.read takes them, in one array: a row per path, its bytes as the
    OS spells them, padded with NULs (which no path holds, and where the read stops). DALI takes
    the array in one piece, where a list of arrays costs its feeding a Python step per sample
    with the GIL held (on the CPU machine 55 us less per batch of 16 paths, of 190)."""
    encoded = [os.fsencode(path) for path in paths]
    width = max(map(len, encoded)) + 1
    padded = b"".join(path.ljust(width, b"\0") for path in encoded)
    return np.frombuffer(padded, np.uint8).reshape(len(encoded), width)


def _relative(offset: int, span: int) -> float:
    """A window's offset as DALI's crop position: 0 = first, 1 = last possible pixel."""
    return offset / span if span else 0.0


def paired_crop(dataset, index: int, epoch: int) -> tuple[float, float, int]:
    """(relative x, relative y, mirror) drawn exactly as the torch transform draws them in `epoch`."""
    rng = sample_rng(dataset.seed, epoch, index)
    t = dataset.transform
    if not t.train:
        return 0.0, 0.0, 0
    span = t.load_size - t.crop_size
    left, top = int(rng.integers(span + 1)), int(rng.integers(span + 1))
    mirror = bool(rng.random() < 0.5) and t.flip
    return _relative(left, span), _relative(top, span), int(mirror)


def centre_crop(dataset, index: int, path: Path, epoch: int) -> tuple[float, float, float, float, int]:
    """(top, left, bottom, right) in the file's own pixels of the square the torch transform's resize
    and centre window keep, and mirror, for `epoch`; DALI resamples only that region (fn.resize's
    ROI), so a strip far longer than wide is never resized whole first, as on the torch path. The
    size comes from the header; an unreadable header gives the file's top-left square: DALI then
    fails on the file, and the batch goes the torch path's way."""
    size = dataset.transform.image_size
    mirror = bool(sample_rng(dataset.seed, epoch, index).random() < 0.5) and dataset.transform.flip
    header = image_size(path)
    if header is None:
        return 0.0, 0.0, float(size), float(size), int(mirror)
    width, height, left, top = center_crop_geometry(*header, size)
    x_scale, y_scale = header[0] / width, header[1] / height
    return top * y_scale, left * x_scale, (top + size) * y_scale, (left + size) * x_scale, int(mirror)


def _columns(rows: list[tuple], dtypes: tuple) -> list[np.ndarray]:
    """Per-sample tuples as one array per output, a batch of scalars: DALI takes each array in one
    conversion, where a list of 0-d arrays costs one per sample (Python time in every pipe.run())."""
    return [np.array([row[k] for row in rows], dtype) for k, dtype in enumerate(dtypes)]


class _Handoff:
    """A bounded queue from a producer thread to its consumer that stop() ends on both sides: a
    producer waiting for room and a consumer waiting for an item both return.

    A take never wakes the producer: a woken thread's first act is to take the GIL, which the
    consumer needs right then for the step it took the item for (the training loop's next(), its
    copy and its kernel launches). A producer that found the queue full is ahead: it looks for room
    instead, after POLL_S, then at doubling intervals up to POLL_MAX_S (each look takes the GIL, and
    a parked pipeline's threads look all through the trainer's validation; an item still waits in
    the queue meanwhile), and once its item is in, waits until YIELD_S after the latest take before
    its next work (feeding DALI, drawing crops), which holds the GIL, at times inside calls that
    cannot be interrupted. On the CPU, the training loop's Python work after next() took a p90 of
    1.2-1.4 ms without that pause and 0.4 ms with it (0.37 alone). A producer that is behind never
    finds the queue full, so never waits."""

    POLL_S = 0.001
    POLL_MAX_S = 0.008
    YIELD_S = 0.001

    def __init__(self, size: int):
        self.size = size
        self.items: collections.deque = collections.deque()
        self.arrived = threading.Condition()
        self.stopped = threading.Event()
        self.taken_at = -math.inf

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item) -> bool:
        """False when stopped before the item found room."""
        ahead = len(self.items) >= self.size
        interval = self.POLL_S
        while len(self.items) >= self.size and not self.stopped.is_set():
            time.sleep(interval)
            interval = min(2 * interval, self.POLL_MAX_S)
        with self.arrived:
            if self.stopped.is_set():
                return False
            self.items.append(item)
            self.arrived.notify()
        if ahead:
            time.sleep(max(0.0, self.taken_at + self.YIELD_S - time.monotonic()))
        return True

    def get(self):
        """The next item, or _STOPPED once stopped."""
        while not self.stopped.is_set():
            try:
                item = self.items.popleft()  # deque operations are atomic: no lock, nobody woken
            except IndexError:
                with self.arrived:
                    if not self.items and not self.stopped.is_set():
                        self.arrived.wait(0.1)
                continue
            self.taken_at = time.monotonic()
            return item
        return _STOPPED

    def stop(self) -> None:
        self.stopped.set()
        with self.arrived:
            self.arrived.notify_all()


_STOPPED = object()


def _join(thread: threading.Thread | None) -> None:
    """Waits for a helper thread, unless this is it: the garbage collector may finalise an epoch's
    generator on any thread, its own helpers' included."""
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def _sample_files(dataset, index: int) -> tuple[Path, ...]:
    """The files DALI reads for one sample: A and B of paired folders, else the one image."""
    if isinstance(dataset, PairedFolderDataset):
        return dataset.pairs[index]
    if isinstance(dataset, ClassFolderDataset):
        return dataset.samples[index][:1]
    return (dataset.files[index],)


class _BatchSource:
    """Feeds DALI one batch of file paths and crop parameters per call, in sampler order.

    DALI calls it inside pipe.run(), so a thread of its own draws the crops (and reads the image
    folders' headers) AHEAD batches early: the call then only takes a ready batch. The files are
    DALI's to read, so one that vanished since start-up fails in its own batch, not in the call
    for a batch PREFETCH ahead. start() hands it the (epoch, indices) of each batch to feed: the
    iterations expected to follow the current one come right after it, so DALI sees no epoch end
    while the sampler can tell what comes next. stop() ends the thread."""

    AHEAD = 4

    def __init__(self, dataset):
        self.dataset = dataset
        self.ready = _Handoff(self.AHEAD)
        self.ready.stop()  # nothing to read before start()
        self.thread: threading.Thread | None = None

    def start(self, feed) -> None:
        self.stop()
        self.ready = _Handoff(self.AHEAD)
        self.thread = threading.Thread(target=self._produce, args=(feed, self.ready),
                                       name="fastgan-dali-source", daemon=True)
        self.thread.start()

    def _produce(self, feed, ready: _Handoff) -> None:
        try:
            for epoch, indices in feed:
                if not ready.put(self._load(epoch, indices)):
                    return
        except Exception as error:  # raised in DALI's call, where the loop decides what it means
            ready.put(error)
            return
        ready.put(None)

    def _load(self, epoch: int, indices: list[int]) -> tuple:
        d = self.dataset
        files = [_sample_files(d, i) for i in indices]
        paths = [_encoded_paths(column) for column in zip(*files)]
        if _paired(d):
            crops = [paired_crop(d, i, epoch) for i in indices]
            return (*paths, *_columns(crops, (np.float32, np.float32, np.int32)))
        crops = np.array([centre_crop(d, i, sample[0], epoch) for i, sample in zip(indices, files)], np.float32)
        columns = crops[:, 0:2].copy(), crops[:, 2:4].copy(), crops[:, 4].astype(np.int32)
        if isinstance(d, ClassFolderDataset):
            return *paths, *columns, np.array([d.samples[i][1] for i in indices], np.int64)
        return *paths, *columns

    def __call__(self):
        item = self.ready.get()
        if item is None or item is _STOPPED:
            raise StopIteration
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        self.ready.stop()
        _join(self.thread)


def to_torch(tensor_list, device: torch.device, channels_last: bool,
             stream: torch.cuda.Stream | None = None) -> torch.Tensor:
    """One pipeline output as a tensor of its own (copied on `stream` on a GPU), in the torch path's layout."""
    from nvidia.dali.tensors import TensorListGPU
    if isinstance(tensor_list, TensorListGPU):  # images; labels stay on the CPU like the torch path's
        from nvidia.dali.plugin.pytorch import feed_ndarray
        dense = tensor_list.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.float32, device=device)
        feed_ndarray(dense, out, cuda_stream=stream)
    else:
        out = torch.from_numpy(np.array(tensor_list.as_tensor()))
    if out.dim() == 4 and channels_last:
        out = out.permute(0, 3, 1, 2)  # NHWC storage seen as NCHW: channels_last strides, no copy
    return out


_runners: weakref.WeakSet = weakref.WeakSet()


def _stop_runners() -> None:
    """At exit, DALI's own hook shuts every pipeline down; a runner still in pipe.run() (a parked
    pipeline reading ahead, an iteration left open) would race that, so the runners stop first."""
    for runner in list(_runners):
        runner.close()


class _PipelineRunner:
    """Runs the pipeline in a thread of its own and hands the training loop finished torch batches,
    AHEAD of need: the loop's next() only takes one, instead of blocking in pipe.run() (feeding the
    source, scheduling, waiting for the decode) while the GPU could be training.

    On a GPU each batch is copied out of DALI's buffers on the loader's own stream, which the
    runner waits for (its thread, not the loop's), so DALI may reuse those buffers at its next run;
    take() then marks the tensors as used on the loop's stream, so the caching allocator does not
    give their memory back to the runner while the step still reads them. The stream is the
    loader's, not a new one per epoch: the allocator reuses a freed block only on its own stream."""

    AHEAD = 2

    def __init__(self, pipe, source: _BatchSource, device: torch.device, channels_last: bool,
                 stream: torch.cuda.Stream | None):
        self.pipe, self.source, self.stream = pipe, source, stream
        self.device, self.channels_last = device, channels_last
        self.ready = _Handoff(self.AHEAD)
        self.thread = threading.Thread(target=self._produce, name="fastgan-dali-runner", daemon=True)
        _runners.add(self)
        atexit.unregister(_stop_runners)  # registered again after DALI's hook (imported by now): runs before it
        atexit.register(_stop_runners)
        self.thread.start()

    def _produce(self) -> None:
        try:
            if self.stream is not None:
                # A new thread's current device is GPU 0; another rank's stream switched to and back
                # from here would open a context (hundreds of MB) on GPU 0.
                torch.cuda.set_device(self.stream.device)
            while True:
                outputs = self.pipe.run()
                if not self.ready.put(self._copy_out(outputs)):
                    return
        except StopIteration:
            self.ready.put(None)
        except BaseException as error:  # raised again in the loop's take(), which decides what it means
            self.ready.put(error)

    def _copy_out(self, outputs) -> list[torch.Tensor]:
        if self.stream is None:
            return [to_torch(o, self.device, self.channels_last) for o in outputs]
        with torch.cuda.stream(self.stream):
            tensors = [to_torch(o, self.device, self.channels_last, self.stream) for o in outputs]
        self.stream.synchronize()
        return tensors

    def take(self) -> list[torch.Tensor] | None:
        """The next batch's tensors, None at the end of the data; a pipeline error is raised here."""
        item = self.ready.get()
        if isinstance(item, BaseException):
            raise item
        if item is None or self.stream is None:
            return item
        consumer = torch.cuda.current_stream(self.device)
        for tensor in item:
            if tensor.is_cuda:
                tensor.record_stream(consumer)
        return item

    def close(self) -> None:
        """Stops the thread; the source stops first, so a run() waiting on it returns."""
        self.ready.stop()
        self.source.stop()
        _join(self.thread)


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]


@dataclass
class _Plan:
    """One iteration: its batches and the dataset epoch whose crops they take. `sampler` is a copy
    of the sampler as that iteration read it, from which the plan expected next is derived."""

    sampler: object
    epoch: int
    batches: list[list[int]]

    def following(self, batch_size: int) -> "_Plan | None":
        """The trainer's next epoch (sampler.set_epoch(epoch + 1), dataset.set_epoch(epoch + 1)) for a
        sampler with epochs; the same order again for one without (a list). None when the sampler
        cannot give its next epoch: a guess that failed reads nothing ahead, and raises nothing
        here either (the caller's own set_epoch will, if the caller ever asks for that epoch)."""
        if not (hasattr(self.sampler, "set_epoch") and hasattr(self.sampler, "epoch")):
            return self
        try:
            sampler = copy.copy(self.sampler)
            sampler.set_epoch(sampler.epoch + 1)
            return _Plan(sampler, self.epoch + 1, _chunks(list(sampler), batch_size))
        except Exception:
            return None

    def same_as(self, other: "_Plan") -> bool:
        return self.epoch == other.epoch and self.batches == other.batches


def _feed(plan: _Plan, position: int, batch_size: int):
    """(epoch, indices) of each batch of `plan` from `position`, then of each plan expected to follow."""
    while plan is not None and plan.batches:
        for indices in plan.batches[position:]:
            yield plan.epoch, indices
        plan, position = plan.following(batch_size), 0


class _Parked:
    """The loader's parked stream, kept apart from the loader so that a loader dropped without
    close() can be finalised: the parked stream's threads, still reading ahead, would run on."""

    def __init__(self):
        self.stream: _Stream | None = None

    def take(self) -> "_Stream | None":
        stream, self.stream = self.stream, None
        return stream

    def close(self) -> None:
        stream = self.take()
        if stream is not None:
            stream.close()


@dataclass
class _Stream:
    """An open pipeline, its source and its runner; `expected` is the plan it feeds next once parked."""

    pipe: object
    source: _BatchSource
    runner: _PipelineRunner
    expected: _Plan | None = None

    def close(self) -> None:
        self.runner.close()
        _shut_down(self.pipe)


class DALILoader:
    """Iterates one epoch of `sampler` (call sampler.set_epoch and dataset.set_epoch first).

    One pipeline serves epoch after epoch, fed without a break: after an iteration's batches the
    source goes on with the iteration expected next (the trainer's next epoch), so those batches
    are decoded while the trainer ends the epoch (validation, the checkpoint), and DALI neither
    rewinds nor refills at an epoch's start. An epoch read to its end parks the pipeline; the next
    iteration takes it when it asks for exactly the expected batches and epoch, else the parked
    pipeline is shut down and a new one built (the GPU decoder's set-up). An epoch cut short or
    failed shuts its pipeline down. Each iteration owns its pipeline, so two at once (a batch
    peeked with next(iter(loader)) while another runs) never share one; close() shuts the parked
    one down (the trainer calls it when the run ends).

    PREFETCH is DALI's own queue depth: iterations in flight inside the pipeline, which a batch of
    small images needs to keep the decoder and the GPU operators busy at once."""

    PREFETCH = 3

    def __init__(self, dataset, sampler, batch_size: int, device: torch.device, channels_last: bool = False,
                 num_threads: int = 4):
        reason = dali_import_error() or unsupported_reason(dataset)
        if reason:
            raise ValueError(f"cannot load with DALI: {reason}")
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size
        self.device, self.channels_last, self.num_threads = device, channels_last, num_threads
        self.skipped = 0
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._parked = _Parked()
        weakref.finalize(self, self._parked.close)
        self._generation = 0  # close() starts a new one: an iteration of an older one parks nothing

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def _plan(self) -> _Plan:
        return _Plan(copy.copy(self.sampler), getattr(self.dataset, "epoch", 0),
                     _chunks(list(self.sampler), self.batch_size))

    def _build(self, source: _BatchSource):
        from nvidia.dali import fn, pipeline_def, types

        d = self.dataset
        gpu = self.device.type == "cuda"
        gray = getattr(d, "mode", "RGB") == "L"
        channels = 1 if gray else 3
        layout = "HWC" if self.channels_last else "CHW"

        def finish(image, x, y, mirror, crop: int):
            if gpu:
                image = image.gpu()
            return fn.crop_mirror_normalize(image, crop=(crop, crop), crop_pos_x=x, crop_pos_y=y, mirror=mirror,
                                            mean=[127.5] * channels, std=[127.5] * channels,
                                            output_layout=layout, dtype=types.FLOAT)

        def decode(paths):
            # The torch path (PIL) ignores EXIF orientation; a rotated A|B image would also split wrongly.
            # Plain reads: a file mapped into memory and truncated meanwhile (a dataset rewritten
            # during a run) would kill the process with SIGBUS, not fail its batch.
            encoded = fn.io.file.read(paths, dont_use_mmap=True)
            return fn.decoders.image(encoded, device="mixed" if gpu else "cpu", adjust_orientation=False,
                                     output_type=types.GRAY if gray else types.RGB)

        def resize_square(image, size: int):
            return fn.resize(image, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC)

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads,
                      device_id=(self.device.index or 0) if gpu else None, prefetch_queue_depth=self.PREFETCH)
        def pipeline():
            if _paired(d):
                t = d.transform
                size = t.load_size if t.train else t.crop_size
                if isinstance(d, AlignedDataset):
                    paths, x, y, mirror = fn.external_source(source=source, num_outputs=4, batch=True)
                    image = decode(paths)
                    left = fn.slice(image, rel_start=(0.0, 0.0), rel_shape=(1.0, 0.5), axes=(0, 1))
                    right = fn.slice(image, rel_start=(0.0, 0.5), rel_shape=(1.0, 0.5), axes=(0, 1))
                    a, b = (left, right) if d.direction == "AtoB" else (right, left)
                else:
                    paths_a, paths_b, x, y, mirror = fn.external_source(source=source, num_outputs=5, batch=True)
                    a, b = decode(paths_a), decode(paths_b)
                    if d.direction == "BtoA":
                        a, b = b, a
                return (finish(resize_square(a, size), x, y, mirror, t.crop_size),
                        finish(resize_square(b, size), x, y, mirror, t.crop_size))
            if isinstance(d, ClassFolderDataset):
                paths, roi_start, roi_end, mirror, label = fn.external_source(source=source, num_outputs=5,
                                                                              batch=True)
            else:
                paths, roi_start, roi_end, mirror = fn.external_source(source=source, num_outputs=4, batch=True)
            size = d.transform.image_size
            image = fn.resize(decode(paths), resize_x=size, resize_y=size, roi_start=roi_start, roi_end=roi_end,
                              interp_type=types.INTERP_CUBIC)
            image = finish(image, 0.0, 0.0, mirror, size)
            return (image, label) if isinstance(d, ClassFolderDataset) else (image,)

        pipe = pipeline()
        pipe.build()
        return pipe

    def _batch_dict(self, tensors: list[torch.Tensor], indices: list[int]) -> dict:
        d = self.dataset
        if _paired(d):
            names = ([d.files[i].stem for i in indices] if isinstance(d, AlignedDataset)
                     else [d.pairs[i][0].stem for i in indices])
            return {"A": tensors[0], "B": tensors[1], "name": names, "skipped": 0}
        if isinstance(d, ClassFolderDataset):
            return {"image": tensors[0], "label": tensors[1].reshape(-1), "skipped": 0}
        return {"image": tensors[0], "skipped": 0}

    def _torch_fallback(self, indices: list[int], error: Exception) -> dict:
        warnings.warn(f"DALI could not load a batch ({type(error).__name__}: {str(error).splitlines()[0]}); "
                      f"decoding it with PIL instead, which skips unreadable files", stacklevel=3)
        return collate_skipping([self.dataset[i] for i in indices])

    def _open(self, plan: _Plan, position: int) -> _Stream:
        """A pipeline delivering `plan` from `position`: the parked one when this is the iteration it
        expected, else a new one."""
        parked = self._parked.take()
        if parked is not None:
            if position == 0 and parked.expected.same_as(plan):
                return parked
            parked.close()
        source = _BatchSource(self.dataset)
        source.start(_feed(plan, position, self.batch_size))
        try:
            pipe = self._build(source)
        except BaseException:
            source.stop()
            raise
        return _Stream(pipe, source, _PipelineRunner(pipe, source, self.device, self.channels_last, self._stream))

    def close(self) -> None:
        """Shuts the parked pipeline down, and an iteration still open will shut its own down when it
        ends, not park it; a later epoch builds a new one."""
        self._generation += 1
        self._parked.close()

    def __iter__(self):
        plan = self._plan()
        position = 0
        generation = self._generation
        while position < len(plan.batches):
            stream = self._open(plan, position)
            finished = False
            try:
                while position < len(plan.batches):
                    tensors = stream.runner.take()
                    yield self._batch_dict(tensors, plan.batches[position])
                    position += 1
                finished = True
            except (RuntimeError, ValueError, OSError) as error:  # undecodable or unreadable: this batch via PIL
                yield self._torch_fallback(plan.batches[position], error)
                position += 1
            finally:
                parkable = finished and self._parked.stream is None and generation == self._generation
                expected = plan.following(self.batch_size) if parkable else None  # the next epoch's order: a randperm
                if expected is not None:
                    stream.expected = expected
                    self._parked.stream = stream
                else:
                    stream.close()
                del stream


def _shut_down(pipe) -> None:
    """Stops a pipeline's executor threads now. Left to the garbage collector, a pipeline held in a
    reference cycle (an exception's traceback) can be collected in a forked DataLoader worker, where
    its Shutdown waits forever on threads the fork did not copy: a test run once hung so. DALI has no
    public close; a pipeline shut down this way makes its own later __del__ a no-op."""
    shutdown = getattr(pipe, "_shutdown", None)
    if shutdown is not None:
        shutdown()


def choose_loader(requested: str, dataset, device: torch.device) -> tuple[str, str]:
    """("dali" | "torch", why): auto takes DALI when it is installed, a GPU is present and the data are files."""
    reason = dali_import_error() or unsupported_reason(dataset)
    if requested == "dali":
        if reason:
            raise SystemExit(f"data.loader=dali: {reason}")
        return "dali", "requested" + ("" if device.type == "cuda" else " (DALI CPU operators: no GPU)")
    if requested == "torch":
        return "torch", "requested"
    if reason:
        return "torch", reason
    if device.type != "cuda":
        return "torch", "no GPU (DALI's CPU operators are no faster than the torch workers here)"
    return "dali", "DALI is installed, a GPU is present and the data are image files"
