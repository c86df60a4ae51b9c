"""The DALI loader on DALI's CPU operators (GPU variants run on the GPU machine)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install 'fastgan[dali]')")

from fastgan.data import (AlignedDataset, ClassFolderDataset, DefaultEdges2Photo, ImageFolderDataset,  # noqa: E402
                          PairedFolderDataset, collate_skipping)
from fastgan.data.dali import DALILoader, choose_loader  # noqa: E402
from fastgan.data.sampler import ShardedSampler  # noqa: E402

CPU = torch.device("cpu")
DEVICES = [pytest.param(CPU, id="cpu"),
           pytest.param(torch.device("cuda", 0), id="cuda",
                        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")])]


def blocky(rng, size: int) -> np.ndarray:
    return rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)


@pytest.fixture
def aligned(tmp_path) -> Path:
    """A|B images whose B is A with its colour channels rotated (so alignment is checkable)."""
    rng = np.random.default_rng(0)
    for i in range(12):
        a = blocky(rng, 72)
        Image.fromarray(np.concatenate([a, a[:, :, [1, 2, 0]]], 1)).save(tmp_path / f"{i:02d}.png")
    return tmp_path


def epoch(loader, sampler, dataset, epoch=0, start=0):
    sampler.set_epoch(epoch, start)
    dataset.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crops_and_flips_equal_the_torch_path(aligned, device, seed):
    """load_size = image size makes the resize an identity: DALI must crop and flip exactly as torch does."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=seed)
    sampler = ShardedSampler(len(ds), 4, seed=seed)
    for e in range(2):
        for batch in epoch(DALILoader(ds, sampler, 4, device), sampler, ds, e):
            ref = collate_skipping([ds[int(name)] for name in batch["name"]])
            assert batch["A"].shape == (4, 3, 64, 64) and batch["A"].dtype == torch.float32
            torch.testing.assert_close(batch["A"].cpu(), ref["A"], atol=1e-6, rtol=0)
            torch.testing.assert_close(batch["B"].cpu(), ref["B"], atol=1e-6, rtol=0)
            assert torch.equal(batch["B"], batch["A"][:, [1, 2, 0]]), "A and B were cropped differently"
            assert batch["skipped"] == 0


def test_resized_output_matches_the_torch_path_in_distribution(aligned):
    ds = AlignedDataset(aligned, load_size=80, crop_size=64, seed=0, direction="BtoA")
    sampler = ShardedSampler(len(ds), 4, seed=0)
    for batch in epoch(DALILoader(ds, sampler, 4, CPU), sampler, ds):
        ref = collate_skipping([ds[int(name)] for name in batch["name"]])
        assert batch["A"].min() >= -1 and batch["A"].max() <= 1
        assert (batch["A"] - ref["A"]).abs().mean() < 0.03  # bicubic filters differ slightly, windows do not
        assert torch.equal(batch["A"], batch["B"][:, [1, 2, 0]])


def test_channels_last_layout(aligned):
    ds = AlignedDataset(aligned, load_size=72, crop_size=64)
    sampler = ShardedSampler(len(ds), 4)
    nchw = epoch(DALILoader(ds, sampler, 4, CPU), sampler, ds)[0]["A"]
    nhwc = epoch(DALILoader(ds, sampler, 4, CPU, channels_last=True), sampler, ds)[0]["A"]
    assert nhwc.shape == nchw.shape and nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(nhwc, nchw)


def test_paired_folders(tmp_path):
    rng = np.random.default_rng(1)
    for sub in ("A", "B"):
        (tmp_path / sub).mkdir()
    for i in range(4):
        a = blocky(rng, 64)
        Image.fromarray(a).save(tmp_path / "A" / f"{i}.png")
        Image.fromarray(255 - a).save(tmp_path / "B" / f"{i}.png")
    ds = PairedFolderDataset(tmp_path, load_size=64, crop_size=48, seed=5)
    sampler = ShardedSampler(len(ds), 2, seed=5)
    for batch in epoch(DALILoader(ds, sampler, 2, CPU), sampler, ds):
        torch.testing.assert_close(batch["B"], -batch["A"], atol=1e-6, rtol=0)
        ref = collate_skipping([ds[int(n)] for n in batch["name"]])
        torch.testing.assert_close(batch["A"], ref["A"], atol=1e-6, rtol=0)


def test_class_folders_and_grayscale(tmp_path):
    rng = np.random.default_rng(2)
    for label, name in enumerate(("cats", "dogs")):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(blocky(rng, 48)).save(tmp_path / name / f"{i}.jpg")
    ds = ClassFolderDataset(tmp_path, image_size=32, channels=1, flip=True, seed=0)
    sampler = ShardedSampler(len(ds), 3, shuffle=False)
    batches = epoch(DALILoader(ds, sampler, 3, CPU), sampler, ds)
    assert [b["label"].tolist() for b in batches] == [[0, 0, 0], [1, 1, 1]]
    assert batches[0]["image"].shape == (3, 1, 32, 32) and batches[0]["label"].dtype == torch.int64
    ref = collate_skipping([ds[i] for i in range(3)])
    assert (batches[0]["image"] - ref["image"]).abs().mean() < 0.05


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classes", [False, True])
def test_centre_windows_equal_the_torch_path_on_non_square_images(tmp_path, device, classes):
    """The torch path's centre window floors an odd leftover ((W - size) // 2); shorter side = size
    makes the resize an identity, so DALI must give the very same pixels, flips included."""
    rng = np.random.default_rng(6)
    folder = tmp_path / "only" if classes else tmp_path
    folder.mkdir(exist_ok=True)
    for i, (width, height) in enumerate([(35, 32), (32, 37), (33, 32), (40, 32), (32, 32), (32, 45)]):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{i}.png")
    ds = (ClassFolderDataset if classes else ImageFolderDataset)(tmp_path, image_size=32, flip=True, seed=3)
    sampler = ShardedSampler(len(ds), 3, shuffle=False)
    for e in range(2):
        batches = epoch(DALILoader(ds, sampler, 3, device), sampler, ds, e)
        ref = collate_skipping([ds[i] for i in range(len(ds))])
        torch.testing.assert_close(torch.cat([b["image"] for b in batches]).cpu(), ref["image"], atol=1e-6, rtol=0)


def test_resized_centre_window_takes_the_torch_geometry(tmp_path):
    """33x20 to shorter side 10 is 16.5 wide: Python rounds that to 16 (half to even), and the centre
    window starts at 3 of those 16. DALI is given the file's region under that window (3 x 33/16 =
    6.1875 to 13 x 33/16) rather than rounding its own way."""
    from fastgan.data.dali import centre_crop
    rng = np.random.default_rng(7)
    smooth = np.kron(rng.integers(0, 256, (4, 6, 3)), np.ones((5, 6, 1))).astype(np.uint8)[:20, :33]
    Image.fromarray(smooth).save(tmp_path / "0.png")
    ds = ImageFolderDataset(tmp_path, image_size=10)
    assert centre_crop(ds, 0, tmp_path / "0.png", epoch=0) == (0.0, 6.1875, 20.0, 26.8125, 0)
    (tmp_path / "bad").write_bytes(b"not an image")
    assert centre_crop(ds, 0, tmp_path / "bad", epoch=0) == (0.0, 0.0, 10.0, 10.0, 0)
    sampler = ShardedSampler(1, 1, shuffle=False)
    dali = epoch(DALILoader(ds, sampler, 1, CPU), sampler, ds)[0]["image"][0]
    assert (dali - ds[0]["image"]).abs().mean() < 0.03  # bicubic filters differ slightly, windows do not


def test_a_strip_far_longer_than_wide_is_not_resized_whole(tmp_path):
    """A 200000 x 1 image at size 256 would be 51,200,000 x 256 pixels resized whole (39 GB) for the
    256 x 256 kept: DALI resamples only the region under the window, as the torch path does, so
    the batch loads (no fallback to PIL, which warns) with the torch path's window."""
    import warnings

    column = np.linspace(0, 255, 200_000)
    strip = np.stack([column, column[::-1], np.full_like(column, 128)], -1)[None].astype(np.uint8)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    ds = ImageFolderDataset(tmp_path, image_size=256, flip=False)
    sampler = ShardedSampler(1, 1, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = epoch(DALILoader(ds, sampler, 1, CPU), sampler, ds)[0]["image"][0]
    assert image.shape == (3, 256, 256)
    assert (image - ds[0]["image"]).abs().max() < 0.02


def test_exif_orientation_is_ignored_as_the_torch_path_does(tmp_path):
    """An A|B JPEG tagged 'rotate 90': rotating it first would cut across both halves."""
    a, b = np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)
    a[..., 0], b[..., 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    for i in range(2):
        Image.fromarray(np.concatenate([a, b], 1)).save(tmp_path / f"{i}.jpg", exif=exif, quality=100)
    ds = AlignedDataset(tmp_path, load_size=32, crop_size=32, flip=False)
    sampler = ShardedSampler(len(ds), 2, shuffle=False)
    batch = epoch(DALILoader(ds, sampler, 2, CPU), sampler, ds)[0]
    ref = collate_skipping([ds[0], ds[1]])
    assert ref["A"][:, 0].mean() > 0.9 and ref["B"][:, 2].mean() > 0.9  # red A, blue B
    torch.testing.assert_close(batch["A"], ref["A"], atol=0.02, rtol=0)
    torch.testing.assert_close(batch["B"], ref["B"], atol=0.02, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path, channels):
    ramp = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "0.png")
    ds = ImageFolderDataset(tmp_path, image_size=32, channels=channels)
    expected = torch.from_numpy(np.rint(ramp / 257) / 127.5 - 1).float().expand(channels, 32, 32)
    torch.testing.assert_close(ds[0]["image"], expected, atol=1e-6, rtol=0)
    sampler = ShardedSampler(1, 1, shuffle=False)
    torch.testing.assert_close(epoch(DALILoader(ds, sampler, 1, CPU), sampler, ds)[0]["image"][0], expected,
                               atol=1e-6, rtol=0)


def test_two_shards_cover_the_data_once(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(10):
        Image.fromarray(blocky(rng, 32)).save(tmp_path / f"{i}.png")
    ds = ImageFolderDataset(tmp_path, image_size=32)
    seen = []
    for rank in (0, 1):
        sampler = ShardedSampler(len(ds), 2, rank=rank, world_size=2, seed=4)
        for batch in epoch(DALILoader(ds, sampler, 2, CPU), sampler, ds):
            for image in batch["image"]:
                matches = [i for i in range(len(ds)) if torch.allclose(image, ds[i]["image"], atol=0.05)]
                seen += matches
    assert len(seen) == 8 and len(set(seen)) == 8  # 10 samples, 2 ranks x 2 per step: 2 whole steps, tail dropped


def test_resume_mid_epoch_continues_the_same_order(aligned):
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, seed=0)
    full = [b["name"] for b in epoch(DALILoader(ds, sampler, 4, CPU), sampler, ds, 1)]
    rest = [b["name"] for b in epoch(DALILoader(ds, sampler, 4, CPU), sampler, ds, 1, start=1)]
    assert rest == full[1:]


def test_length_counts_the_last_partial_batch_it_yields(aligned):
    """As the torch DataLoader's (drop_last=False): an order that does not fill its last batch still yields it."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    loader = DALILoader(ds, list(range(10)), 4, CPU)
    assert [len(b["A"]) for b in loader] == [4, 4, 2]
    assert len(loader) == 3
    loader.close()


def test_an_undecodable_file_is_skipped_and_counted(aligned):
    (aligned / "05.png").write_bytes((aligned / "05.png").read_bytes()[:200])  # truncated
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, shuffle=False)
    with pytest.warns(UserWarning):
        batches = epoch(DALILoader(ds, sampler, 4, CPU), sampler, ds)
    assert [b["skipped"] for b in batches] == [0, 1, 0]
    assert [len(b["A"]) for b in batches] == [4, 3, 4]


def test_loader_choice():
    default = DefaultEdges2Photo("val", image_size=32, samples=4)
    assert choose_loader("auto", default, CPU) == (
        "torch", "DALI has no pipeline for DefaultEdges2Photo; it reads AlignedDataset, "
                 "PairedFolderDataset, ImageFolderDataset, ClassFolderDataset")
    with pytest.raises(SystemExit, match="data.loader=dali: DALI has no pipeline for DefaultEdges2Photo"):
        choose_loader("dali", default, CPU)
    assert choose_loader("torch", default, CPU) == ("torch", "requested")


def test_auto_stays_on_torch_without_a_gpu(aligned):
    ds = AlignedDataset(aligned, load_size=72, crop_size=64)
    assert choose_loader("auto", ds, CPU)[0] == "torch"
    assert choose_loader("dali", ds, CPU) == ("dali", "requested (DALI CPU operators: no GPU)")


def test_trainer_runs_on_dali(aligned, tmp_path, capsys):
    from fastgan.train import main
    out = tmp_path / "run"
    assert main(["--data.dataset", "aligned", "--data.root", str(aligned), "--data.load_size", "72",
                 "--data.crop_size", "64", "--train.batch_size", "4", "--train.max_steps", "7",
                 "--data.loader", "dali", "--train.out_dir", str(out), "--train.progress", "false",
                 "--model.ngf", "8", "--model.ndf", "8", "--train.val_batches", "0"]) == 0
    assert "data loader: dali (requested (DALI CPU operators: no GPU))" in capsys.readouterr().out
    # 3 steps an epoch: the run crossed two epoch ends on one pipeline, and shut it down when it ended.
    assert _running_pipelines() == 0
    assert _threads_named("fastgan-dali-source") == 0 and _threads_named("fastgan-dali-runner") == 0


def _threads_named(name: str) -> int:
    import threading
    return sum(t.name == name for t in threading.enumerate())


def test_the_source_prepares_ahead_off_the_training_thread_and_stops(aligned):
    """Batches of paths and crops are ready before DALI asks for them (DALI reads the files
    itself); close() ends the thread even when nobody takes the batches it prepared."""
    import time

    from fastgan.data.dali import _BatchSource
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    source = _BatchSource(ds)
    source.start((0, [i]) for i in range(12))
    deadline = time.monotonic() + 10
    while len(source.ready) < _BatchSource.AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(source.ready) == _BatchSource.AHEAD
    paths, xs, ys, mirrors = source()
    assert paths[0].tobytes().rstrip(b"\0") == os.fsencode(aligned / "00.png")
    source.stop()
    assert not source.thread.is_alive()


def test_a_producer_that_was_ahead_pauses_after_the_consumer_takes(monkeypatch):
    """The consumer takes from a full queue: the producer's waiting item goes in, then the producer
    waits until YIELD_S after the take before its next GIL-holding work, so the consumer's step
    runs first. A put with room pauses not at all."""
    import threading
    import time

    import fastgan.data.dali as dali
    monkeypatch.setattr(dali._Handoff, "YIELD_S", 0.2)
    handoff = dali._Handoff(1)
    began = time.monotonic()
    assert handoff.put("first")
    assert time.monotonic() - began < 0.1
    returned = []
    producer = threading.Thread(target=lambda: returned.append((handoff.put("second"), time.monotonic())))
    producer.start()
    time.sleep(0.05)  # the producer finds the queue full and waits
    assert handoff.get() == "first"
    producer.join(timeout=5)
    assert returned and returned[0][0]
    assert returned[0][1] >= handoff.taken_at + 0.2
    assert handoff.get() == "second"


def test_a_producer_waiting_for_room_looks_less_and_less_often(monkeypatch):
    """Each look for room takes the GIL: a producer kept waiting (the trainer validating while a
    parked pipeline reads ahead) looks after 1 ms, then at doubling intervals up to 8 ms."""
    import time
    from types import SimpleNamespace

    import fastgan.data.dali as dali
    handoff = dali._Handoff(1)
    assert handoff.put("first")
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) == 6:
            handoff.stop()

    monkeypatch.setattr(dali, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    assert not handoff.put("second")
    assert waits == [0.001, 0.002, 0.004, 0.008, 0.008, 0.008]


def test_a_take_wakes_nobody(monkeypatch):
    """Taking a ready item notifies no thread: the woken producer would take the GIL the training
    loop needs right after next(). The producer finds the room by looking for it."""
    import threading

    import fastgan.data.dali as dali
    handoff = dali._Handoff(2)
    assert handoff.put("first") and handoff.put("second")
    notified = []
    monkeypatch.setattr(threading.Condition, "notify", lambda self, n=1: notified.append(n))
    monkeypatch.setattr(threading.Condition, "notify_all", lambda self: notified.append("all"))
    assert handoff.get() == "first" and handoff.get() == "second"
    assert notified == []


def test_stop_ends_a_waiting_producer_and_a_waiting_consumer():
    import threading

    import fastgan.data.dali as dali
    full, empty = dali._Handoff(1), dali._Handoff(1)
    assert full.put("item")
    results = []
    threads = [threading.Thread(target=lambda: results.append(full.put("more"))),
               threading.Thread(target=lambda: results.append(empty.get()))]
    for thread in threads:
        thread.start()
    full.stop()
    empty.stop()
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert sorted(results, key=repr) == sorted([False, dali._STOPPED], key=repr)


def test_an_abandoned_epoch_stops_its_threads(aligned):
    """A run that stops mid-epoch (max_steps) leaves no thread behind reading or decoding the next batches."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    order = list(range(len(ds))) * 4  # more batches than the threads read and decode ahead
    batches = iter(DALILoader(ds, order, 1, CPU))
    next(batches)
    assert _threads_named("fastgan-dali-source") == 1 and _threads_named("fastgan-dali-runner") == 1
    batches.close()
    assert _threads_named("fastgan-dali-source") == 0 and _threads_named("fastgan-dali-runner") == 0


@pytest.mark.parametrize("device", DEVICES)
def test_batches_are_decoded_ahead_of_the_loop(aligned, device):
    """While the loop holds one batch (a training step), the runner thread has the next ones
    decoded and waiting, so next() does not wait for DALI; they arrive complete and in order."""
    import time

    from fastgan.data.dali import _PipelineRunner
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 2, shuffle=False)
    loader = DALILoader(ds, sampler, 2, device)
    reference = epoch(loader, sampler, ds)
    runners = []
    original = _PipelineRunner.__init__

    def remember(self, *args):
        original(self, *args)
        runners.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_PipelineRunner, "__init__", remember)
        batches = iter(loader)
        first = next(batches)
        deadline = time.monotonic() + 30
        while len(runners[0].ready) < _PipelineRunner.AHEAD and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(runners[0].ready) == _PipelineRunner.AHEAD
        rest = list(batches)
    assert len(runners) == 1
    for got, want in zip([first, *rest], reference, strict=True):
        assert got["name"] == want["name"]
        torch.testing.assert_close(got["A"], want["A"], atol=0, rtol=0)
        torch.testing.assert_close(got["B"], want["B"], atol=0, rtol=0)


def test_an_unexpected_error_in_the_runner_is_raised_in_the_loop(aligned, monkeypatch):
    """Only a failed decode goes the torch path's way; any other error ends the epoch with itself."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, shuffle=False)
    loader = DALILoader(ds, sampler, 4, CPU)

    def broken(*args):
        raise KeyError("not a decode error")

    monkeypatch.setattr("fastgan.data.dali.to_torch", broken)
    with pytest.raises(KeyError, match="not a decode error"):
        epoch(loader, sampler, ds)
    assert _threads_named("fastgan-dali-runner") == 0


def _epoch_of_single_batches(ds) -> tuple[list[dict], list[str]]:
    """An unshuffled epoch of batch 1 through DALI on the CPU: its batches and the warnings given."""
    sampler = ShardedSampler(len(ds), 1, shuffle=False)
    loader = DALILoader(ds, sampler, 1, CPU)
    with pytest.warns(UserWarning) as caught:
        batches = epoch(loader, sampler, ds)
    loader.close()  # the pipeline built after a failed batch finished the epoch and is parked
    return batches, [str(w.message) for w in caught]


def test_a_file_gone_since_start_up_is_skipped_and_counted(aligned):
    """A file deleted after the dataset was listed: only the batch holding it goes through the torch
    path, which skips and counts it, and the epoch goes on."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    (aligned / "07.png").unlink()
    batches, messages = _epoch_of_single_batches(ds)
    assert sum(m.startswith("DALI could not load a batch") for m in messages) == 1, messages
    assert any("skipping unreadable image" in m and "07.png" in m for m in messages), messages
    assert [b["skipped"] for b in batches] == [0] * 7 + [1] + [0] * 4
    assert [len(b.get("A", ())) for b in batches] == [1] * 7 + [0] + [1] * 4  # an empty batch: nothing readable


def test_an_image_folder_file_gone_since_start_up_fails_only_its_own_batch(tmp_path):
    """The source reads only the header of a folder image (for the centre window); a vanished file
    gets a placeholder window there and fails DALI's read in its own batch, not a batch early."""
    rng = np.random.default_rng(3)
    for i in range(6):
        Image.fromarray(blocky(rng, 40)).save(tmp_path / f"{i}.png")
    ds = ImageFolderDataset(tmp_path, image_size=32, seed=0)
    (tmp_path / "3.png").unlink()
    batches, messages = _epoch_of_single_batches(ds)
    assert sum(m.startswith("DALI could not load a batch") for m in messages) == 1, messages
    assert [b["skipped"] for b in batches] == [0, 0, 0, 1, 0, 0]
    assert [len(b.get("image", ())) for b in batches] == [1, 1, 1, 0, 1, 1]


def _closed_after_one_batch(aligned):
    """(dataset, sampler, loader, its open iteration) after one batch of 3 was taken and the loader closed."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, shuffle=False)
    loader = DALILoader(ds, sampler, 4, CPU)
    open_epoch = iter(loader)
    next(open_epoch)
    loader.close()
    return ds, sampler, loader, open_epoch


def test_closing_the_loader_mid_epoch_leaves_that_pipeline_unparked(aligned):
    """close() while an iteration is open: the pipeline that iteration finishes with is shut down."""
    ds, sampler, loader, open_epoch = _closed_after_one_batch(aligned)
    assert len(list(open_epoch)) == 2
    assert _running_pipelines() == 0
    assert len(epoch(loader, sampler, ds)) == 3  # and the loader still works
    loader.close()


def test_closing_the_loader_mid_epoch_parks_no_pipeline_built_after_a_failed_batch(aligned):
    """close() while an iteration is open, which then fails a batch: the pipeline it builds for the
    rest of the epoch is shut down at the end too, not parked after the close."""
    (aligned / "05.png").write_bytes((aligned / "05.png").read_bytes()[:200])  # truncated: batch 1 fails
    _, _, loader, open_epoch = _closed_after_one_batch(aligned)
    with pytest.warns(UserWarning):
        assert [b["skipped"] for b in open_epoch] == [1, 0]
    assert loader._parked.stream is None
    assert _running_pipelines() == 0


def _running_pipelines() -> int:
    from nvidia.dali.pipeline import Pipeline
    return sum(p is not None and p._pipe is not None for p in (ref() for ref in list(Pipeline._pipes)))


def test_one_pipeline_serves_every_epoch_read_to_its_end(aligned, monkeypatch):
    """A finished epoch's pipeline goes on into the next (no new build, the GPU decoder's set-up),
    with each epoch's own order and crops; close() shuts it down."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 5, seed=0)  # 2 batches an epoch: fewer than DALI keeps in flight
    loader = DALILoader(ds, sampler, 5, CPU)
    builds = []
    original = DALILoader._build
    monkeypatch.setattr(DALILoader, "_build", lambda self, source: builds.append(1) or original(self, source))
    for e in range(3):
        batches = epoch(loader, sampler, ds, e)
        assert [len(b["A"]) for b in batches] == [5, 5]
        assert [b["name"] for b in batches] == [[ds.files[i].stem for i in list(sampler)[k:k + 5]]
                                                 for k in (0, 5)]
        for batch in batches:
            ref = collate_skipping([ds[int(name)] for name in batch["name"]])
            torch.testing.assert_close(batch["A"], ref["A"], atol=1e-6, rtol=0)
    assert len(builds) == 1
    assert _running_pipelines() == 1
    loader.close()
    assert _running_pipelines() == 0


def test_the_next_epoch_is_decoded_while_the_trainer_ends_this_one(aligned, monkeypatch):
    """Once an epoch's last batch is taken, the parked pipeline already decodes the next epoch's
    (its order and its crops), so the next epoch's first next() takes a ready batch."""
    import time

    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=3)
    sampler = ShardedSampler(len(ds), 3, seed=3)
    loader = DALILoader(ds, sampler, 3, CPU)
    epoch(loader, sampler, ds, 0)
    runner = loader._parked.stream.runner
    deadline = time.monotonic() + 30
    while len(runner.ready) < runner.AHEAD and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(runner.ready) == runner.AHEAD  # before the trainer asked for epoch 1
    builds = []
    monkeypatch.setattr(DALILoader, "_build", lambda self, source: builds.append(1))
    batches = epoch(loader, sampler, ds, 1)
    assert builds == []
    assert [b["name"] for b in batches] == [[ds.files[i].stem for i in list(sampler)[k:k + 3]] for k in (0, 3, 6, 9)]
    for batch in batches:
        ref = collate_skipping([ds[int(name)] for name in batch["name"]])
        torch.testing.assert_close(batch["A"], ref["A"], atol=1e-6, rtol=0)
    loader.close()


@pytest.mark.parametrize("then", [(0, 0), (2, 0), (1, 2)], ids=["same epoch", "skipped epoch", "resumed mid-epoch"])
def test_an_iteration_other_than_the_expected_one_gets_a_new_pipeline(aligned, monkeypatch, then):
    """Anything but the next epoch from its start (the same epoch again, another epoch, a resume
    mid-epoch): the parked pipeline, which decoded the next epoch, is shut down and a new one
    reads exactly what was asked."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 3, seed=0)
    loader = DALILoader(ds, sampler, 3, CPU)
    epoch(loader, sampler, ds, 0)
    builds = []
    original = DALILoader._build
    monkeypatch.setattr(DALILoader, "_build", lambda self, source: builds.append(1) or original(self, source))
    batches = epoch(loader, sampler, ds, *then)
    assert builds == [1]
    assert [b["name"] for b in batches] == [[ds.files[i].stem for i in list(sampler)[k:k + 3]]
                                             for k in range(0, len(sampler), 3)]
    for batch in batches:
        ref = collate_skipping([ds[int(name)] for name in batch["name"]])
        torch.testing.assert_close(batch["A"], ref["A"], atol=1e-6, rtol=0)
    loader.close()
    assert _running_pipelines() == 0


def test_a_sampler_refusing_the_next_epoch_costs_nothing_this_epoch(aligned):
    """The loader reads the next epoch ahead by asking a copy of the sampler for it: a sampler that
    cannot give it only turns that off. This epoch's batches all come from DALI, unwarned and
    complete, and no thread is left reading."""
    import warnings

    class LastEpoch(ShardedSampler):
        def set_epoch(self, epoch, start_batch=0):
            if epoch > 0:
                raise ValueError(f"this sampler has no epoch {epoch}")
            super().set_epoch(epoch, start_batch)

    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = LastEpoch(len(ds), 4, seed=0)
    loader = DALILoader(ds, sampler, 4, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a PIL fallback would warn
        batches = list(loader)
    assert [b["name"] for b in batches] == [[ds.files[i].stem for i in list(sampler)[k:k + 4]] for k in (0, 4, 8)]
    assert loader._parked.stream is None
    assert _threads_named("fastgan-dali-runner") == 0 and _threads_named("fastgan-dali-source") == 0
    assert _running_pipelines() == 0


def test_a_loader_dropped_without_close_stops_reading_ahead(aligned):
    """The parked pipeline's threads go on decoding the next epoch; when the loader itself is
    dropped, they stop and the pipeline is shut down."""
    import gc

    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, seed=0)
    loader = DALILoader(ds, sampler, 4, CPU)
    epoch(loader, sampler, ds)
    assert _threads_named("fastgan-dali-runner") == 1
    del loader
    gc.collect()
    assert _threads_named("fastgan-dali-runner") == 0 and _threads_named("fastgan-dali-source") == 0
    assert _running_pipelines() == 0


def test_at_exit_the_threads_stop_before_dali_shuts_its_pipelines_down(aligned):
    """DALI shuts every pipeline down at exit; a runner thread still in pipe.run() (a parked pipeline
    reading ahead, an iteration left open) would race that shutdown: the threads stop first."""
    import subprocess
    import sys
    import textwrap

    from conftest import ROOT
    code = textwrap.dedent("""
        import sys, threading
        import torch
        from nvidia.dali.pipeline import Pipeline
        from fastgan.data import AlignedDataset
        from fastgan.data.dali import DALILoader
        from fastgan.data.sampler import ShardedSampler

        shutdown = Pipeline._shutdown
        def checked(self):
            if any(t.name == "fastgan-dali-runner" for t in threading.enumerate()):
                print("a pipeline was shut down under a running runner thread", flush=True)
            shutdown(self)
        Pipeline._shutdown = checked
        ds = AlignedDataset(sys.argv[1], load_size=72, crop_size=64)
        sampler = ShardedSampler(len(ds), 4)
        loader = DALILoader(ds, sampler, 4, torch.device("cpu"))
        list(loader)
        left_open = iter(DALILoader(ds, sampler, 4, torch.device("cpu")))
        next(left_open)
        print("exiting", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code, str(aligned)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["exiting"]


def test_two_iterations_at_once_each_read_their_own_epoch(aligned):
    """A batch peeked from one iteration while another runs: neither takes the other's pipeline."""
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, shuffle=False)
    loader = DALILoader(ds, sampler, 4, CPU)
    expected = epoch(loader, sampler, ds)
    peeking = iter(loader)
    first = next(peeking)
    running = list(loader)
    rest = list(peeking)
    for got in (running, [first, *rest]):
        assert [b["name"] for b in got] == [b["name"] for b in expected]
        for a, b in zip(got, expected):
            torch.testing.assert_close(a["A"], b["A"], atol=0, rtol=0)
    loader.close()


def test_no_pipeline_is_left_running_after_an_epoch_cut_short(aligned):
    """The error path and an abandoned epoch shut their pipeline down. One left to the garbage
    collector (a traceback of DALI's frames can hold it) may be collected in a forked DataLoader
    worker and hang it there: a CI run once did. The check scans every pipeline of the process,
    so, last in this file, it also covers the tests above."""
    (aligned / "05.png").write_bytes((aligned / "05.png").read_bytes()[:200])  # truncated: the error path
    ds = AlignedDataset(aligned, load_size=72, crop_size=64, seed=0)
    sampler = ShardedSampler(len(ds), 4, shuffle=False)
    loader = DALILoader(ds, sampler, 4, CPU)
    with pytest.warns(UserWarning):
        epoch(loader, sampler, ds)
    loader.close()
    abandoned = iter(DALILoader(ds, sampler, 4, CPU))
    next(abandoned)
    abandoned.close()
    assert _running_pipelines() == 0
