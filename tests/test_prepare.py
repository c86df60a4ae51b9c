"""`python -m fastgan.prepare edges`: photo folder -> aligned edges|photo pairs split into train/val/test."""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from fastgan.data import AlignedDataset, canny_edges
from fastgan.data.transforms import resize_center_crop
from fastgan.prepare import assign_splits, main, split_counts

from conftest import ROOT

PHOTOS = ROOT / "fastgan" / "data" / "default_photos"
STEMS = sorted(p.stem for p in PHOTOS.glob("*.jpg"))


def esc(path):
    return re.escape(str(path))


def outputs(dst: Path) -> dict[str, list[str]]:
    return {split: sorted(p.stem for p in (dst / split).iterdir()) for split in ("train", "val", "test")}


def run(capsys, *args):
    code = main(["edges", "--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("total, fractions, expected", [
    (9, (0.8, 0.1, 0.1), [7, 1, 1]),
    (100, (0.8, 0.1, 0.1), [80, 10, 10]),
    (3, (0.8, 0.1, 0.1), [1, 1, 1]),
    (3, (0.98, 0.01, 0.01), [1, 1, 1]),
    (2, (0.5, 0.25, 0.25), [1, 1, 0]),
    (10, (1.0, 0.0, 0.0), [10, 0, 0]),
    (10, (0.0, 0.5, 0.5), [0, 5, 5]),
])
def test_split_counts(total, fractions, expected):
    assert split_counts(total, fractions) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 200), st.floats(0.01, 0.98), st.floats(0.01, 0.98))
def test_split_counts_cover_every_photo_and_fill_every_split(total, train, val):
    test = 1 - train - val
    assume(test > 0)
    counts = split_counts(total, (train, val, test))
    assert sum(counts) == total and min(counts) >= 1
    for count, fraction in zip(counts, (train, val, test)):
        exact = total * fraction  # rounded, except that up to two photos move to fill empty splits
        assert math.floor(exact) - 2 <= count <= max(1, math.ceil(exact))


def test_assign_splits_is_a_seeded_partition():
    photos = [Path(f"p{i:02d}.jpg") for i in range(20)]
    first = assign_splits(photos, (0.8, 0.1, 0.1), seed=0)
    assert sorted(p for paths in first.values() for p in paths) == photos
    assert [len(first[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert assign_splits(list(reversed(photos)), (0.8, 0.1, 0.1), seed=0) == first  # input order is irrelevant
    assert assign_splits(photos, (0.8, 0.1, 0.1), seed=0) == first
    assert assign_splits(photos, (0.8, 0.1, 0.1), seed=1) != first


def test_prepare_edges_on_the_embedded_photos(tmp_path, capsys):
    dst = tmp_path / "out"
    code, out, _ = run(capsys, "--src", PHOTOS, "--dst", dst, "--size", 32, "--blur", 3, "--invert",
                       "--format", "png")
    assert code == 0
    assert f"wrote 9 edge|photo pairs to {dst} (train 7, val 1, test 1); skipped 0 unreadable" in out
    splits = outputs(dst)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 1, 1]
    assert sorted(sum(splits.values(), [])) == STEMS
    for split, stems in splits.items():
        dataset = AlignedDataset(dst / split, load_size=32, crop_size=32, train=False)
        assert len(dataset) == len(stems)
        for index, stem in enumerate(stems):
            pair = np.asarray(Image.open(dst / split / f"{stem}.png"))
            photo = np.asarray(resize_center_crop(Image.open(PHOTOS / f"{stem}.jpg").convert("RGB"), 32))
            np.testing.assert_array_equal(pair[:, 32:], photo)
            np.testing.assert_array_equal(pair[:, :32], canny_edges(photo, 100, 200, 3, invert=True))
            sample = dataset[index]
            assert sample["name"] == stem and sample["A"].shape == sample["B"].shape == (3, 32, 32)


@pytest.mark.parametrize("inside", ["train", "val/photos"])
@pytest.mark.parametrize("flag", ["--src", "--edge-maps"])
def test_refuses_inputs_inside_the_split_folders_it_empties(tmp_path, capsys, inside, flag):
    """--overwrite empties DST/train, val and test: an input folder there would be deleted."""
    dst = tmp_path / "data"
    folder = dst / inside
    folder.mkdir(parents=True)
    for path in sorted(PHOTOS.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    args = ["--src", folder, "--edge-maps", folder] if flag == "--edge-maps" else ["--src", folder]
    if flag == "--edge-maps":
        args[1] = PHOTOS
    code, _, err = run(capsys, *args, "--dst", dst, "--size", 16, "--overwrite")
    assert code == 2 and f"{flag} {folder.resolve()} lies in the output folder {dst / inside.split('/')[0]}" in err
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in PHOTOS.glob("*.jpg"))


def test_fails_when_no_photo_could_be_read(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.jpg", "b.png"):
        (src / name).write_bytes(b"not an image")
    code, out, err = run(capsys, "--src", src, "--dst", tmp_path / "out", "--size", 16)
    assert code == 1 and "wrote 0 edge|photo pairs" in out and "skipped 2 unreadable" in out
    assert f"error: no photo of --src {src} could be read" in err


def test_refuses_a_non_empty_destination_unless_overwrite(tmp_path, capsys):
    dst = tmp_path / "out"
    assert run(capsys, "--src", PHOTOS, "--dst", dst, "--size", 16)[0] == 0
    first = outputs(dst)
    code, _, err = run(capsys, "--src", PHOTOS, "--dst", dst, "--size", 16, "--seed", 5)
    assert code == 2 and f"--dst {dst} is not empty; pass --overwrite to replace its train, val, test folders" in err
    assert outputs(dst) == first
    (dst / "README.txt").write_text("kept")
    assert run(capsys, "--src", PHOTOS, "--dst", dst, "--size", 16, "--seed", 5, "--overwrite")[0] == 0
    second = outputs(dst)
    assert second != first and sorted(sum(second.values(), [])) == STEMS  # no stale pairs from the first run
    assert (dst / "README.txt").read_text() == "kept"


def test_a_photo_over_pils_pixel_limit_is_skipped_and_reported(tmp_path, capsys, monkeypatch):
    src = tmp_path / "photos"
    src.mkdir()
    for stem in STEMS[:2]:
        Image.open(PHOTOS / f"{stem}.jpg").resize((8, 6)).save(src / f"{stem}.png")
    Image.new("RGB", (40, 30)).save(src / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 1200 pixels > 2 * 300: DecompressionBombError
    code, out, err = run(capsys, "--src", src, "--dst", tmp_path / "out", "--size", 16, "--split", 1, 0, 0)
    assert code == 0 and "wrote 2 edge|photo pairs" in out and "skipped 1 unreadable" in out, err
    assert f"  skipped {src / 'huge.png'}: Image size (1200 pixels) exceeds limit" in out


def test_a_dst_nobody_may_write_is_one_line(tmp_path, capsys, unwritable_folder):
    dst = unwritable_folder / "pairs"
    code, out, err = run(capsys, "--src", PHOTOS, "--dst", dst, "--size", 16)
    assert code == 2 and err.startswith(f"error: --dst {dst}: cannot create {dst / 'train'}: ") and err.count("\n") == 1


def test_unreadable_photos_are_skipped_and_reported(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for stem in STEMS[:4]:
        shutil.copy(PHOTOS / f"{stem}.jpg", src)
    broken = src / "broken.jpg"
    broken.write_bytes((PHOTOS / "rocket.jpg").read_bytes()[:3000])
    code, out, _ = run(capsys, "--src", src, "--dst", tmp_path / "out", "--size", 16, "--split", 0.6, 0.2, 0.2)
    assert code == 0 and "wrote 4 edge|photo pairs" in out and "skipped 1 unreadable" in out
    assert f"  skipped {broken}: " in out
    assert "broken" not in sum(outputs(tmp_path / "out").values(), [])


def make_edge_maps(folder: Path, stems, scale=1.0):
    folder.mkdir()
    for stem in stems:
        photo = Image.open(PHOTOS / f"{stem}.jpg").convert("L")
        size = (round(photo.width * scale), round(photo.height * scale))
        photo.resize(size).point(lambda v: 255 if v > 128 else 0).save(folder / f"{stem}.png")


def test_user_edge_maps_replace_canny(tmp_path, capsys):
    src, maps = tmp_path / "photos", tmp_path / "hed"
    src.mkdir()
    stems = STEMS[:3]
    for stem in stems:
        shutil.copy(PHOTOS / f"{stem}.jpg", src)
    make_edge_maps(maps, stems, scale=0.5)  # a different resolution, same aspect ratio
    dst = tmp_path / "out"
    assert run(capsys, "--src", src, "--dst", dst, "--size", 24, "--edge-maps", maps, "--invert",
               "--format", "png")[0] == 0
    for split, names in outputs(dst).items():
        for stem in names:
            pair = np.asarray(Image.open(dst / split / f"{stem}.png"))
            expected = 255 - np.asarray(resize_center_crop(Image.open(maps / f"{stem}.png").convert("L"), 24))
            for channel in range(3):
                np.testing.assert_array_equal(pair[:, :24, channel], expected)


def test_edge_map_errors(tmp_path, capsys):
    src, maps = tmp_path / "photos", tmp_path / "hed"
    src.mkdir()
    for stem in STEMS[:3]:
        shutil.copy(PHOTOS / f"{stem}.jpg", src)
    make_edge_maps(maps, STEMS[:2])
    code, _, err = run(capsys, "--src", src, "--dst", tmp_path / "a", "--edge-maps", maps)
    assert code == 2 and f"1 photo(s) in {src} have no same-stem edge map in {maps}: {STEMS[2]}.jpg" in err
    Image.new("L", (50, 50)).save(maps / f"{STEMS[2]}.png")  # square map, 512x342 photo
    code, _, err = run(capsys, "--src", src, "--dst", tmp_path / "b", "--edge-maps", maps)
    assert code == 2 and (f"edge map {maps / STEMS[2]}.png is 50x50 but its photo {src / STEMS[2]}.jpg is 512x342; "
                          "both must have the same aspect ratio") in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, message", [
    (["--split", "0.5", "0.1", "0.1"], "--split takes three non-negative fractions (train val test) that sum to 1; "
                                        "got 0.5 0.1 0.1"),
    (["--blur", "4"], "blur is the Gaussian kernel size: 0 (no blur) or an odd positive int; got 4"),
    (["--low", "90", "--high", "10"], "Canny thresholds need 0 <= low <= high; got low=90.0, high=10.0"),
    (["--size", "0"], "--size must be a positive int, got 0"),
])
def test_bad_arguments(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "--src", PHOTOS, "--dst", tmp_path / "out", *args)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_source_errors(tmp_path, capsys):
    code, _, err = run(capsys, "--src", tmp_path / "none", "--dst", tmp_path / "out")
    assert code == 2 and f"--src photo folder {tmp_path / 'none'} does not exist" in err
    code, _, err = run(capsys, "--src", PHOTOS, "--dst", PHOTOS)
    assert code == 2 and f"--dst {PHOTOS} must differ from --src {PHOTOS}" in err


def test_module_help():
    result = subprocess.run([sys.executable, "-m", "fastgan.prepare", "edges", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--src", "--dst", "--size", "--low", "--high", "--blur", "--invert", "--edge-maps", "--split",
                   "--seed", "--overwrite"):
        assert option in result.stdout
