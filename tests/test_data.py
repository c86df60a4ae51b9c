"""fastgan.data: every dataset format, paired augmentation that keeps A and B aligned,
determinism per (seed, epoch, index), bad-data handling, the IDX reader and the embedded default."""
from __future__ import annotations

import gzip
import io
import pickle
import re
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fastgan.data import (AlignedDataset, ClassFolderDataset, DefaultEdges2Photo, IDXDataset, ImageFolderDataset,
                          PairedFolderDataset, PairedTransform, UnreadableImageWarning, canny_edges,
                          collate_skipping, fashion_mnist, read_idx)
from fastgan.config import Config
from fastgan.data.default import load_photo, default_photo_names
from fastgan.data.files import image_size
from fastgan.data.idx import FASHION_MNIST_ROOT
from fastgan.data.sampler import ShardedSampler
from fastgan.data.transforms import (MAX_RESIZED_PER_KEPT_PIXEL, center_crop_geometry, resize_center_crop,
                                     to_tensor)
from fastgan.train import make_loader
from train_helpers import write_idx

SEEDS = range(12)


def noise(height, width, seed=0):
    """Random RGB pixels: any misalignment between two crops shows as a mismatch."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def rolled(rgb):
    """B as a known function of A that survives resizing exactly: channels rotated."""
    return rgb[..., [1, 2, 0]]


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def esc(path):
    return re.escape(str(path))


def truncated_jpeg(path, height=32, width=32):
    """A JPEG whose header is intact (so it passes construction) but whose pixels stop half-way."""
    save(path, noise(height, width))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def aligned_folder(root, count=3, half=24):
    for i in range(count):
        a = noise(half, half, seed=i)
        save(root / f"pair{i}.png", np.concatenate([a, rolled(a)], axis=1))
    return root


def paired_folder(root, count=3, size=24):
    for i in range(count):
        a = noise(size, size, seed=i)
        save(root / "A" / f"img{i}.PNG", a)  # upper-case extension: matched case-insensitively
        save(root / "B" / f"img{i}.bmp", rolled(a))  # different format, same stem
    return root


def tensor_of(array):
    return to_tensor(np.ascontiguousarray(array))


# ---------------------------------------------------------------- paired transforms


def test_paired_transform_matches_the_pix2pix_recipe_drawn_from_the_sample_rng():
    """resize to load_size, crop at (left, top) = two integer draws, flip on a third draw < 0.5."""
    image = Image.fromarray(noise(30, 40))
    transform = PairedTransform(load_size=20, crop_size=12)
    flips = set()
    for seed in SEEDS:
        (out,) = transform([image], np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        left, top, mirror = int(rng.integers(9)), int(rng.integers(9)), rng.random() < 0.5
        expected = np.asarray(image.resize((20, 20), Image.BICUBIC))[top:top + 12, left:left + 12]
        torch.testing.assert_close(out, tensor_of(expected[:, ::-1] if mirror else expected), rtol=0, atol=0)
        flips.add(bool(mirror))
    assert flips == {True, False}


def test_paired_transform_eval_resizes_to_crop_size_without_jitter_or_flip():
    image = Image.fromarray(noise(30, 40))
    transform = PairedTransform(load_size=20, crop_size=12, train=False)
    outs = [transform([image], np.random.default_rng(seed))[0] for seed in SEEDS]
    expected = tensor_of(np.asarray(image.resize((12, 12), Image.BICUBIC)))
    for out in outs:
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_flip_off_keeps_the_same_crops():
    image = Image.fromarray(noise(30, 30))
    with_flip, without = PairedTransform(20, 12, flip=True), PairedTransform(20, 12, flip=False)
    for seed in SEEDS:
        (a,) = with_flip([image], np.random.default_rng(seed))
        (b,) = without([image], np.random.default_rng(seed))
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


@pytest.mark.parametrize("kwargs, message", [
    ({"load_size": 286, "crop_size": 300}, r"crop_size \(300\) must not exceed load_size \(286\)"),
    ({"load_size": 0}, r"load_size must be a positive int, got 0"),
    ({"crop_size": 2.5}, r"crop_size must be a positive int, got 2.5"),
])
def test_paired_transform_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PairedTransform(**kwargs)


# ---------------------------------------------------------------- aligned A|B and paired folders


@pytest.mark.parametrize("seed", SEEDS)
def test_aligned_crops_stay_aligned(tmp_path, seed):
    dataset = AlignedDataset(aligned_folder(tmp_path), load_size=20, crop_size=12, seed=seed)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            sample = dataset[i]
            assert sample["A"].shape == sample["B"].shape == (3, 12, 12)
            assert sample["A"].dtype == torch.float32 and sample["name"] == f"pair{i}"
            torch.testing.assert_close(sample["B"], sample["A"][[1, 2, 0]], rtol=0, atol=0)
            assert -1 <= sample["A"].min() and sample["A"].max() <= 1


def test_aligned_direction_btoa_swaps(tmp_path):
    root = aligned_folder(tmp_path)
    forward = AlignedDataset(root, load_size=20, crop_size=12)[1]
    backward = AlignedDataset(root, direction="BtoA", load_size=20, crop_size=12)[1]
    assert torch.equal(backward["A"], forward["B"]) and torch.equal(backward["B"], forward["A"])


@pytest.mark.parametrize("seed", SEEDS)
def test_paired_folder_crops_stay_aligned(tmp_path, seed):
    dataset = PairedFolderDataset(paired_folder(tmp_path), load_size=20, crop_size=12, seed=seed)
    assert len(dataset) == 3
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample["name"] == f"img{i}"
        torch.testing.assert_close(sample["B"], sample["A"][[1, 2, 0]], rtol=0, atol=0)


def test_augmentations_vary_with_seed_and_epoch_and_repeat_exactly(tmp_path):
    root = aligned_folder(tmp_path, count=1)
    crops = {AlignedDataset(root, load_size=20, crop_size=12, seed=seed)[0]["A"].numpy().tobytes() for seed in SEEDS}
    assert len(crops) > len(SEEDS) // 2
    dataset = AlignedDataset(root, load_size=20, crop_size=12, seed=3)
    first = dataset[0]["A"]
    dataset.set_epoch(1)
    by_epoch = [dataset[0]["A"]]
    dataset.set_epoch(0)
    assert torch.equal(dataset[0]["A"], first)
    assert not torch.equal(by_epoch[0], first)


def test_samples_do_not_depend_on_access_order_pickling_or_workers(tmp_path):
    root = aligned_folder(tmp_path, count=6)
    forward = AlignedDataset(root, load_size=20, crop_size=12, seed=5)
    backward = pickle.loads(pickle.dumps(AlignedDataset(root, load_size=20, crop_size=12, seed=5)))
    in_order = [forward[i] for i in range(6)]
    reversed_order = {i: backward[i] for i in reversed(range(6))}
    loader = DataLoader(forward, batch_size=3, num_workers=2, collate_fn=collate_skipping)
    batches = list(loader)
    from_workers = torch.cat([batch["A"] for batch in batches])
    for i in range(6):
        assert torch.equal(in_order[i]["A"], reversed_order[i]["A"])
        assert torch.equal(in_order[i]["A"], from_workers[i])
    assert [batch["skipped"] for batch in batches] == [0, 0]


def test_persistent_workers_see_each_epoch_and_resume_mid_epoch(tmp_path):
    """The trainer's loader keeps its workers, yet they follow set_epoch: the epoch travels with the index."""
    root = aligned_folder(tmp_path, count=8)

    def trainer_loader(num_workers):
        dataset = AlignedDataset(root, load_size=20, crop_size=12, seed=5)
        sampler = ShardedSampler(len(dataset), 2, seed=5)
        cfg = Config()
        cfg.data.num_workers = num_workers
        loader, name, _ = make_loader(dataset, sampler, cfg, torch.device("cpu"), False, 1, "torch", persistent=True)
        assert name == "torch" and loader.persistent_workers == (num_workers > 0)

        def run(epoch, start_batch=0):  # as the training loop does
            sampler.set_epoch(epoch, start_batch)
            dataset.set_epoch(epoch)
            assert len(loader) == 4 - start_batch
            return list(loader)
        return run

    in_process, workers = trainer_loader(0), trainer_loader(2)
    for epoch, start_batch in [(0, 0), (1, 0), (1, 2), (0, 3)]:
        expected, got = in_process(epoch, start_batch), workers(epoch, start_batch)
        assert len(got) == 4 - start_batch
        for want, have in zip(expected, got):
            assert want["name"] == have["name"]
            assert torch.equal(want["A"], have["A"]) and torch.equal(want["B"], have["B"])
    by_name = [{name: a for batch in workers(epoch) for name, a in zip(batch["name"], batch["A"])}
               for epoch in (0, 1)]
    assert sorted(by_name[0]) == sorted(by_name[1])
    assert any(not torch.equal(by_name[0][name], by_name[1][name]) for name in by_name[0])


def test_paired_folder_rejects_unpaired_files(tmp_path):
    root = paired_folder(tmp_path)
    (root / "B" / "img1.bmp").unlink()
    with pytest.raises(ValueError, match=rf"1 file\(s\) in {esc(root / 'A')} have no same-stem file in "
                                         rf"{esc(root / 'B')}: "
                                         r"img1\.PNG"):
        PairedFolderDataset(root)


def test_paired_folder_lists_at_most_five_unpaired(tmp_path):
    root = paired_folder(tmp_path, count=1)
    for i in range(7):
        save(root / "A" / f"extra{i}.png", noise(8, 8))
    with pytest.raises(ValueError, match=r"7 file\(s\) .*extra0\.png, extra1\.png, extra2\.png, extra3\.png, "
                                         r"extra4\.png \.\.\. \(7 in all\)"):
        PairedFolderDataset(root)


def test_paired_folder_rejects_unpaired_b(tmp_path):
    root = paired_folder(tmp_path)
    save(root / "B" / "orphan.png", noise(8, 8))
    with pytest.raises(ValueError, match=rf"in {esc(root / 'B')} have no same-stem file in {esc(root / 'A')}: "
                                         r"orphan\.png"):
        PairedFolderDataset(root)


def test_paired_folder_size_mismatch_fails_at_start_naming_both_paths(tmp_path):
    """Found from the headers before training starts, not by a crash mid-epoch."""
    root = paired_folder(tmp_path)
    save(root / "B" / "img2.bmp", noise(20, 24))
    with pytest.raises(ValueError, match=rf"^1 paired image\(s\) differ in size: {esc(root / 'A' / 'img2.PNG')} "
                                         rf"is 24x24, {esc(root / 'B' / 'img2.bmp')} is 24x20$"):
        PairedFolderDataset(root)


def test_duplicate_stems_are_ambiguous(tmp_path):
    root = paired_folder(tmp_path)
    save(root / "A" / "img0.jpg", noise(24, 24))
    with pytest.raises(ValueError, match=r"img0\.PNG and .*img0\.jpg have the same stem 'img0'"):
        PairedFolderDataset(root)


@pytest.mark.parametrize("size, what", [((25, 12), "25x12"), ((40, 12), "40x12")], ids=["odd", "not-2x"])
def test_aligned_rejects_images_that_are_not_two_square_halves(tmp_path, size, what):
    aligned_folder(tmp_path)
    bad = save(tmp_path / "bad.png", noise(size[1], size[0]))
    with pytest.raises(ValueError, match=rf"aligned image {esc(bad)} is {what}; .*width must be even and "
                                         r"twice its height"):
        AlignedDataset(tmp_path)


def test_missing_and_empty_folders_fail_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"aligned image folder {esc(tmp_path / 'nope')} does not exist"):
        AlignedDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=rf"{esc(tmp_path / 'empty')} holds no images \(looked for \.jpg \.jpeg \.png"):
        ImageFolderDataset(tmp_path / "empty")
    save(tmp_path / "paired" / "A" / "x.png", noise(4, 4))
    with pytest.raises(FileNotFoundError, match=rf"paired dataset folder {esc(tmp_path / 'paired' / 'B')} does not"):
        PairedFolderDataset(tmp_path / "paired")


@pytest.mark.parametrize("kwargs, message", [
    ({"direction": "AB"}, r"direction must be one of 'AtoB', 'BtoA'; got 'AB'"),
    ({"seed": -1}, r"seed must be a non-negative int, got -1"),
])
def test_aligned_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlignedDataset(aligned_folder(tmp_path), **kwargs)


# ---------------------------------------------------------------- undecodable files


def test_truncated_jpeg_is_none_warned_once_and_counted(tmp_path):
    root = aligned_folder(tmp_path, count=3)
    (root / "pair1.png").unlink()
    bad = truncated_jpeg(root / "pair1.jpg", 24, 48)
    dataset = AlignedDataset(root, load_size=20, crop_size=12)
    with pytest.warns(UnreadableImageWarning, match=rf"skipping unreadable image {esc(bad)}") as caught:
        assert dataset[1] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[1] is None  # the second time is silent
    assert len([w for w in caught if w.category is UnreadableImageWarning]) == 1
    batch = collate_skipping([dataset[i] for i in range(3)])
    assert batch["skipped"] == 1 and batch["A"].shape == (2, 3, 12, 12) and batch["name"] == ["pair0", "pair2"]


def test_unreadable_files_in_each_dataset_kind_become_none(tmp_path):
    truncated_jpeg(tmp_path / "images" / "a.jpg")
    (tmp_path / "classes" / "cat").mkdir(parents=True)
    truncated_jpeg(tmp_path / "classes" / "cat" / "a.jpg")
    root = paired_folder(tmp_path / "paired", count=1)
    (root / "B" / "img0.bmp").write_bytes(b"not an image at all")
    with pytest.warns(UnreadableImageWarning):
        assert ImageFolderDataset(tmp_path / "images", image_size=8)[0] is None
        assert ClassFolderDataset(tmp_path / "classes", image_size=8)[0] is None
        assert PairedFolderDataset(root, load_size=8, crop_size=8)[0] is None


def bmp_claiming_a_huge_size(path):
    """A BMP whose header was damaged to claim 100000 x 50000 pixels: PIL calls it a decompression bomb."""
    save(path, noise(8, 8))
    data = bytearray(path.read_bytes())
    data[18:26] = (100_000).to_bytes(4, "little") + (50_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def test_a_header_claiming_a_huge_size_is_skipped_not_fatal(tmp_path):
    root = aligned_folder(tmp_path / "aligned", count=2)
    bomb = bmp_claiming_a_huge_size(root / "pair2.bmp")
    dataset = AlignedDataset(root, load_size=20, crop_size=12)  # its header is read at construction
    with pytest.warns(UnreadableImageWarning, match=rf"skipping unreadable image {esc(bomb)}: .*decompression bomb"):
        batch = collate_skipping([dataset[i] for i in range(3)])
    assert batch["skipped"] == 1 and batch["name"] == ["pair0", "pair1"]
    folder = tmp_path / "folder"
    bmp_claiming_a_huge_size(folder / "x.bmp")
    with pytest.warns(UnreadableImageWarning):
        assert ImageFolderDataset(folder, image_size=8)[0] is None


def encoded(fmt):
    buffer = io.BytesIO()
    Image.fromarray(noise(12, 12)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "webp"])
def test_every_damaged_header_field_gives_a_sample_or_none(tmp_path, fmt):
    """Each 4-byte field of the first 64 bytes (where the formats keep sizes and modes) overwritten with
    extreme values, either byte order: the header read and the sample load work or report the file,
    nothing else escapes to kill the run."""
    original = encoded(fmt)
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(original)
    dataset = ImageFolderDataset(tmp_path, image_size=8)
    for offset in range(61):
        for value in (0, 1, 20_000_000, 2**31 - 1, 2**32 - 1):
            for order in ("big", "little"):
                data = bytearray(original)
                data[offset:offset + 4] = value.to_bytes(4, order)
                path.write_bytes(bytes(data))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    image_size(path)
                    sample = dataset[0]
                assert sample is None or sample["image"].shape == (3, 8, 8)


def test_collate_skipping():
    sample = {"image": torch.ones(1, 2, 2), "label": torch.tensor(3)}
    batch = collate_skipping([sample, None, sample, None])
    assert batch["skipped"] == 2 and batch["image"].shape == (2, 1, 2, 2) and batch["label"].tolist() == [3, 3]
    assert collate_skipping([None, None, None]) == {"skipped": 3}
    assert collate_skipping([sample])["skipped"] == 0


# ---------------------------------------------------------------- single images and class folders


def test_image_folder_resizes_the_shorter_side_and_centre_crops(tmp_path):
    wide = noise(20, 40)
    save(tmp_path / "wide.png", wide)
    sample = ImageFolderDataset(tmp_path, image_size=10)[0]
    expected = np.asarray(Image.fromarray(wide).resize((20, 10), Image.BICUBIC))[:, 5:15]
    torch.testing.assert_close(sample["image"], tensor_of(expected), rtol=0, atol=0)
    gray = ImageFolderDataset(tmp_path, image_size=10, channels=1)[0]["image"]
    assert gray.shape == (1, 10, 10)
    with pytest.raises(ValueError, match=r"channels must be one of 1, 3; got 4"):
        ImageFolderDataset(tmp_path, channels=4)


def test_a_long_strip_is_resampled_under_its_centre_square_only(tmp_path, monkeypatch):
    """Resized whole, a 200000 x 1 strip at size 64 would be a 2.4 GB intermediate (39 GB at 256)."""
    Image.new("RGB", (200_000, 1), (10, 200, 30)).save(tmp_path / "strip.png")
    resized = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda im, size, *a, **k: resized.append(size) or resize(im, size, *a, **k))
    image = ImageFolderDataset(tmp_path, image_size=64)[0]["image"]
    assert resized == [(64, 64)]
    torch.testing.assert_close(image, tensor_of(np.full((64, 64, 3), (10, 200, 30), np.uint8)), rtol=0, atol=0)


@pytest.mark.parametrize("width, height, size, levels", [(400, 20, 20, 0), (800, 40, 20, 1), (300, 10, 16, 1)])
def test_a_strip_resampled_under_its_square_matches_the_whole_resize(width, height, size, levels):
    """An identity resize still cuts the very pixels; a real one agrees within PIL's rounding."""
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    image = Image.fromarray(np.repeat(ramp, 3, axis=2).astype(np.uint8))
    width_to, height_to, left, top = center_crop_geometry(width, height, size)
    assert width_to * height_to > MAX_RESIZED_PER_KEPT_PIXEL * size * size
    whole = np.asarray(image.resize((width_to, height_to), Image.BICUBIC))[top:top + size, left:left + size]
    assert np.abs(np.asarray(resize_center_crop(image, size)).astype(int) - whole).max() <= levels


def test_image_folder_flip_is_optional_and_seeded(tmp_path):
    save(tmp_path / "x.png", noise(10, 10))
    plain = ImageFolderDataset(tmp_path, image_size=10)[0]["image"]
    flipped = {ImageFolderDataset(tmp_path, image_size=10, flip=True, seed=s)[0]["image"].numpy().tobytes()
               for s in SEEDS}
    assert flipped == {plain.numpy().tobytes(), plain.flip(-1).numpy().tobytes()}


def test_class_folders(tmp_path):
    for name, count in (("zebra", 2), ("ant", 1), ("moth", 3)):
        for i in range(count):
            save(tmp_path / name / f"{i}.png", np.full((12, 12, 3), 40 * i, np.uint8))
    (tmp_path / ".cache").mkdir()
    dataset = ClassFolderDataset(tmp_path, image_size=8)
    assert dataset.classes == ["ant", "moth", "zebra"]
    labels = [dataset[i]["label"] for i in range(len(dataset))]
    assert [int(label) for label in labels] == [0, 1, 1, 1, 2, 2]
    assert all(label.dtype == torch.int64 and label.dim() == 0 for label in labels)
    assert dataset[2]["image"].shape == (3, 8, 8)
    assert float(dataset[2]["image"][0, 0, 0]) == pytest.approx(40 / 127.5 - 1)


def test_class_folders_structural_errors(tmp_path):
    save(tmp_path / "flat" / "x.png", noise(4, 4))
    with pytest.raises(ValueError, match=rf"{esc(tmp_path / 'flat')} has no class sub-folders \(it holds images "
                                         r"directly: x\.png; use ImageFolderDataset\)"):
        ClassFolderDataset(tmp_path / "flat")
    save(tmp_path / "nested" / "a" / "x.png", noise(4, 4))
    (tmp_path / "nested" / "b").mkdir()
    with pytest.raises(ValueError, match=rf"class 'b' folder {esc(tmp_path / 'nested' / 'b')} holds no images"):
        ClassFolderDataset(tmp_path / "nested")


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    back = read_idx(write_idx(tmp_path / "x.idx", array, compress))
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_idx_errors(tmp_path):
    good = write_idx(tmp_path / "good", np.arange(24, dtype=np.uint8).reshape(2, 3, 4)).read_bytes()
    (tmp_path / "magic").write_bytes(b"\x08\x03" + good[2:])
    with pytest.raises(ValueError, match=rf"{esc(tmp_path / 'magic')} is not an IDX file: "
                                         r"bad magic number '08 03 08 03'"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match=r"short is truncated: shape \(2, 3, 4\) of uint8 needs 40 bytes, it has 39"):
        read_idx(tmp_path / "short")
    (tmp_path / "header").write_bytes(good[:10])
    with pytest.raises(ValueError, match=r"header is truncated: 10 bytes, shorter than its 3-dimension header"):
        read_idx(tmp_path / "header")
    (tmp_path / "long").write_bytes(good + b"\0")
    with pytest.raises(ValueError, match=r"long is longer than its header says"):
        read_idx(tmp_path / "long")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(ValueError, match=r"cut\.gz is a damaged gzip file"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(FileNotFoundError, match=r"IDX file .*missing does not exist"):
        read_idx(tmp_path / "missing")


def small_mnist(tmp_path, count=5):
    images = np.random.default_rng(1).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = np.arange(count, dtype=np.uint8) % 10
    return images, labels, write_idx(tmp_path / "images", images), write_idx(tmp_path / "labels", labels)


def test_idx_dataset_pads_and_resizes(tmp_path):
    images, labels, images_path, labels_path = small_mnist(tmp_path)
    padded = IDXDataset(images_path, labels_path, image_size=32)
    sample = padded[3]
    assert len(padded) == 5 and sample["image"].shape == (1, 32, 32)
    torch.testing.assert_close(sample["image"][0, 2:30, 2:30], torch.from_numpy(images[3]).float() / 127.5 - 1)
    assert float(sample["image"][0, :2].max()) == -1 and float(sample["image"][0, :, 30:].max()) == -1
    assert sample["label"].dtype == torch.int64 and sample["label"].dim() == 0 and int(sample["label"]) == 3
    resized = IDXDataset(images_path, image_size=16, fit="resize")[0]
    assert set(resized) == {"image"} and resized["image"].shape == (1, 16, 16)
    expected = np.asarray(Image.fromarray(images[0]).resize((16, 16), Image.BICUBIC))
    torch.testing.assert_close(resized["image"][0], torch.tensor(expected).float() / 127.5 - 1)


def test_idx_dataset_errors(tmp_path):
    _, _, images_path, _ = small_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"image_size 20 is smaller than the 28x28 images of .*; use fit='resize'"):
        IDXDataset(images_path, image_size=20)
    with pytest.raises(ValueError, match=r"fit must be one of 'pad', 'resize'; got 'crop'"):
        IDXDataset(images_path, fit="crop")
    short = write_idx(tmp_path / "short-labels", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=rf"{esc(short)} has 4 labels but images file {esc(images_path)} has 5 images"):
        IDXDataset(images_path, short)
    flat = write_idx(tmp_path / "flat", np.zeros((5, 784), np.uint8))
    with pytest.raises(ValueError, match=r"holds uint8 of shape \(5, 784\); expected uint8 of shape \(N, height"):
        IDXDataset(flat)


def test_fashion_mnist_reads_the_debian_file_names(tmp_path):
    images, labels, _, _ = small_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)  # un-gzipped copies are found too
    dataset = fashion_mnist(tmp_path, split="test")
    assert len(dataset) == 5 and dataset.classes[9] == "Ankle boot" and int(dataset[4]["label"]) == 4
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz not found .*"
                                                r"`apt-get install dataset-fashion-mnist`.* or give --data\.root"):
        fashion_mnist(tmp_path, split="train")
    with pytest.raises(ValueError, match=r"split must be one of 'train', 'test'; got 'val'"):
        fashion_mnist(tmp_path, split="val")


@pytest.mark.skipif(not (FASHION_MNIST_ROOT / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_test_split():
    dataset = fashion_mnist(split="test")
    assert len(dataset) == 10_000 and np.bincount(dataset.labels).tolist() == [1000] * 10


# ---------------------------------------------------------------- edges


def test_canny_edges_matches_opencv_and_inverts():
    image = noise(40, 40)
    image[10:30, 10:30] = 255
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    edges = canny_edges(image, low=50, high=75, blur=5)
    expected = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 50, 75)
    assert edges.shape == (40, 40, 3) and edges.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(edges[..., channel], expected)
    assert set(np.unique(edges)) == {0, 255}
    np.testing.assert_array_equal(canny_edges(image, 50, 75, 5, invert=True), 255 - edges)


@pytest.mark.parametrize("args, message", [
    ((np.zeros((4, 4), np.uint8),), r"needs an HxWx3 uint8 RGB array; got uint8 of shape \(4, 4\)"),
    ((np.zeros((4, 4, 3), np.float32),), r"got float32 of shape \(4, 4, 3\)"),
    ((np.zeros((4, 4, 3), np.uint8), 200, 100), r"need 0 <= low <= high; got low=200, high=100"),
    ((np.zeros((4, 4, 3), np.uint8), 100, 200, 4), r"0 \(no blur\) or an odd positive int; got 4"),
])
def test_canny_edges_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        canny_edges(*args)


# ---------------------------------------------------------------- embedded default


@pytest.fixture(scope="module")
def default_splits():
    return {split: DefaultEdges2Photo(split, image_size=32, samples=48) for split in ("train", "val", "test")}


def test_default_split_is_by_photograph_as_sources_md_says(default_splits):
    photos = {split: {window[0] for window in dataset.windows} for split, dataset in default_splits.items()}
    assert photos["val"] == {"coffee"} and photos["test"] == {"chelsea"}
    assert photos["train"] == {"astronaut", "china", "flower", "hubble_deep_field", "immunohistochemistry",
                               "retina", "rocket"}
    assert default_photo_names("train") == sorted(photos["train"])


def test_default_sizes_ranges_and_content(default_splits):
    dataset = default_splits["val"]
    assert len(dataset) == 48
    for index in (0, 17, 47):
        sample = dataset[index]
        assert sample["A"].shape == sample["B"].shape == (3, 32, 32) and sample["A"].dtype == torch.float32
        assert set(sample["A"].unique().tolist()) <= {-1.0, 1.0}  # binary edges
        assert sample["A"].mean() > 0  # black lines on white
        stem, left, top, side = dataset.windows[index]
        assert sample["name"] == f"{stem}_{index:04d}" and 32 <= side <= 341
        crop = load_photo(stem).crop((left, top, left + side, top + side)).resize((32, 32), Image.BICUBIC)
        torch.testing.assert_close(sample["B"], tensor_of(np.asarray(crop)), rtol=0, atol=0)
        edges = canny_edges(np.asarray(crop), 100, 200, 3, invert=True)
        torch.testing.assert_close(sample["A"], tensor_of(edges), rtol=0, atol=0)


def test_default_sample_counts():
    assert [len(DefaultEdges2Photo(split)) for split in ("train", "val", "test")] == [512, 64, 64]


def test_default_is_deterministic_and_flips_only_in_train(default_splits):
    again = DefaultEdges2Photo("train", image_size=32, samples=48)
    assert again.windows == default_splits["train"].windows and np.array_equal(again.a, default_splits["train"].a)
    assert DefaultEdges2Photo("train", image_size=32, samples=48, seed=1).windows != again.windows
    flips = set()
    for epoch in range(4):
        again.set_epoch(epoch)
        for index in range(8):
            stored, sample = tensor_of(again.b[index]), again[index]["B"]
            mirrored = np.random.default_rng([0, epoch, index]).random() < 0.5
            assert torch.equal(sample, stored.flip(-1) if mirrored else stored)
            flips.add(mirrored)
    assert flips == {True, False}
    val = default_splits["val"]
    val.set_epoch(3)
    assert all(torch.equal(val[i]["B"], tensor_of(val.b[i])) for i in range(8))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"split": "dev"}, ValueError, r"split must be one of 'train', 'val', 'test'; got 'dev'"),
    ({"split": "test", "image_size": 301}, ValueError,
     r"image_size 301 is larger than default photo 'chelsea' \(451x300\); use at most 300"),
    ({"samples": 0}, ValueError, r"samples must be a positive int, got 0"),
    ({"blur": 2}, ValueError, r"odd positive int; got 2"),
])
def test_default_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        DefaultEdges2Photo(**kwargs)
