"""Data preparation from the command line.

    python -m fastgan.prepare edges --src PHOTOS --dst OUT [--size 256] [--low 100 --high 200]
        [--blur 0] [--invert] [--edge-maps DIR] [--split 0.8 0.1 0.1] [--seed 0] [--overwrite]

turns a folder of photographs into an edges -> photo dataset in the aligned A|B format
(A = edges, B = photo) that AlignedDataset and the pix2pix configs read.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fastgan.data.base import check_positive_int
from fastgan.data.edges import canny_edges, check_canny_args
from fastgan.data.files import DECODE_ERRORS, by_stem, decode_image, image_size, list_images, listing
from fastgan.data.transforms import resize_center_crop
from fastgan.outputs import write_problem

SPLITS = ("train", "val", "test")
FORMATS = {"jpg": {"quality": 95}, "png": {}}
ASPECT_TOLERANCE = 0.01


def split_counts(total: int, fractions: tuple[float, float, float]) -> list[int]:
    """Photos per split: largest-remainder rounding, then every split with a positive
    fraction gets at least one photo while another split can spare one."""
    exact = [total * fraction for fraction in fractions]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[:total - sum(counts)]:
        counts[i] += 1
    for i, fraction in enumerate(fractions):
        donor = max(range(len(counts)), key=counts.__getitem__)
        if fraction > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


def assign_splits(photos: list[Path], fractions: tuple[float, float, float], seed: int) -> dict[str, list[Path]]:
    """A seeded shuffle of the (sorted) photos cut into train/val/test: each photo in exactly one split."""
    photos = sorted(photos)
    order = np.random.default_rng(seed).permutation(len(photos))
    bounds = np.cumsum([0] + split_counts(len(photos), fractions))
    return {split: sorted(photos[i] for i in order[bounds[k]:bounds[k + 1]]) for k, split in enumerate(SPLITS)}


def _check_fractions(fractions) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(not f >= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"--split takes three non-negative fractions (train val test) that sum to 1; "
                         f"got {' '.join(map(str, fractions))}")
    return tuple(fractions)


def _prepare_output(dst: Path, overwrite: bool) -> None:
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"--dst {dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--dst {dst} is not empty; pass --overwrite to replace its "
                                  f"{', '.join(SPLITS)} folders")
        for split in SPLITS:
            shutil.rmtree(dst / split, ignore_errors=True)
    for split in SPLITS:
        try:
            (dst / split).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"--dst {dst}: cannot create {dst / split}: {error.strerror}") from None
    problem = write_problem(dst / SPLITS[0])
    if problem:
        raise OSError(f"--dst {dst}: cannot write into {dst / SPLITS[0]}: {problem}")


def _check_outside_outputs(dst: Path, inputs: dict[str, str | Path | None]) -> None:
    """The split folders are emptied (--overwrite) and written: an input inside one would be lost."""
    for flag, folder in inputs.items():
        if folder is None:
            continue
        folder = Path(folder).resolve()
        for split in SPLITS:
            out = (dst / split).resolve()
            if folder == out or out in folder.parents:
                raise ValueError(f"{flag} {folder} lies in the output folder {dst / split}, which prepare "
                                 f"empties and writes; choose a --dst whose {', '.join(SPLITS)} folders hold "
                                 f"no input")


def _decode_or_skip(path: Path, mode: str, skipped: list[str]) -> Image.Image | None:
    try:
        return decode_image(path, mode)
    except DECODE_ERRORS as error:
        skipped.append(f"{path}: {error}")
        return None


def _check_edge_maps(photos: dict[str, Path], maps: dict[str, Path], folder: Path) -> None:
    """Every photo needs a same-stem map of its aspect ratio, or the centre crops would not line up.
    Checked from the headers before anything is written; unreadable headers are left to the decode step."""
    missing = sorted(set(photos) - set(maps))
    if missing:
        raise ValueError(f"{len(missing)} photo(s) in {photos[missing[0]].parent} have no same-stem edge map in "
                         f"{folder}: {listing([photos[stem].name for stem in missing])}")
    for stem, photo_path in photos.items():
        photo_size, map_size = image_size(photo_path), image_size(maps[stem])
        if photo_size is None or map_size is None:
            continue
        photo_aspect, map_aspect = photo_size[0] / photo_size[1], map_size[0] / map_size[1]
        if abs(photo_aspect - map_aspect) > ASPECT_TOLERANCE * photo_aspect:
            raise ValueError(f"edge map {maps[stem]} is {map_size[0]}x{map_size[1]} but its photo {photo_path} is "
                             f"{photo_size[0]}x{photo_size[1]}; both must have the same aspect ratio to stay aligned")


def _edge_map_pixels(edges: Image.Image, size: int, invert: bool) -> np.ndarray:
    """A user-supplied edge map (HED, ...) cut exactly like its photo, as HxWx3 uint8."""
    array = np.asarray(resize_center_crop(edges, size))
    if invert:
        array = 255 - array
    return np.repeat(array[:, :, None], 3, axis=2)


def prepare_edges(src: str | Path, dst: str | Path, size: int = 256, low: float = 100, high: float = 200,
                  blur: int = 0, invert: bool = False, edge_maps: str | Path | None = None,
                  split: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0, overwrite: bool = False,
                  image_format: str = "jpg", progress: bool = True) -> dict:
    """Writes dst/{train,val,test}/<stem>.<image_format>, each an A|B image (A = edges, B = photo),
    and returns {"train": n, "val": n, "test": n, "skipped": [unreadable files]}."""
    src, dst = Path(src), Path(dst)
    check_positive_int("--size", size)
    if image_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {image_format!r}")
    check_canny_args(low, high, blur)
    fractions = _check_fractions(split)
    photos = by_stem(list_images(src, "--src photo folder"))
    maps = None
    if edge_maps is not None:
        maps = by_stem(list_images(edge_maps, "--edge-maps folder"))
        _check_edge_maps(photos, maps, Path(edge_maps))
    if dst.resolve() == src.resolve():
        raise ValueError(f"--dst {dst} must differ from --src {src}")
    _check_outside_outputs(dst, {"--src": src, "--edge-maps": edge_maps})
    _prepare_output(dst, overwrite)
    summary: dict = {name: 0 for name in SPLITS}
    summary["skipped"] = []
    with tqdm(total=len(photos), desc="edges", unit="photo", disable=not progress) as bar:
        for name, paths in assign_splits(list(photos.values()), fractions, seed).items():
            for path in paths:
                bar.update()
                photo = _decode_or_skip(path, "RGB", summary["skipped"])
                if photo is None:
                    continue
                b = np.asarray(resize_center_crop(photo, size))
                if maps is None:
                    a = canny_edges(b, low, high, blur, invert)
                else:
                    edges = _decode_or_skip(maps[path.stem], "L", summary["skipped"])
                    if edges is None:
                        continue
                    a = _edge_map_pixels(edges, size, invert)
                out = dst / name / f"{path.stem}.{image_format}"
                Image.fromarray(np.concatenate([a, b], axis=1)).save(out, **FORMATS[image_format])
                summary[name] += 1
    return summary


def _print_summary(summary: dict, dst: Path) -> None:
    written = sum(summary[name] for name in SPLITS)
    counts = ", ".join(f"{name} {summary[name]}" for name in SPLITS)
    print(f"wrote {written} edge|photo pairs to {dst} ({counts}); skipped {len(summary['skipped'])} unreadable")
    for line in summary["skipped"]:
        print(f"  skipped {line}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastgan.prepare", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    edges = commands.add_parser(
        "edges", help="photo folder -> aligned edges|photo pairs split into train/val/test",
        description="Resize each photo (shorter side) and centre-crop it to SIZE x SIZE, compute its Canny "
                    "edges (or take a same-stem map from --edge-maps), and write A|B images (A = edges, "
                    "B = photo) into DST/train, DST/val and DST/test. Unreadable photos are skipped and listed.",
        epilog="example, the edges of the talk this project grew from (5x5 blur, Canny 50/75, black on white): "
               "python -m fastgan.prepare edges --src faces/ --dst data/edges2faces --size 128 "
               "--blur 5 --low 50 --high 75 --invert")
    edges.add_argument("--src", required=True, type=Path, help="folder of photographs (.jpg .jpeg .png .bmp .webp)")
    edges.add_argument("--dst", required=True, type=Path, help="output folder; must be empty unless --overwrite")
    edges.add_argument("--size", type=int, default=256,
                       help="side of each square half, in pixels (default: %(default)s)")
    edges.add_argument("--low", type=float, default=100, help="Canny lower hysteresis threshold (default: %(default)s)")
    edges.add_argument("--high", type=float, default=200,
                       help="Canny upper hysteresis threshold (default: %(default)s)")
    edges.add_argument("--blur", type=int, default=0,
                       help="Gaussian blur kernel size before Canny: odd, or 0 for none "
                            "(default: %(default)s; the talk used 5)")
    edges.add_argument("--invert", action="store_true",
                       help="black edges on white (also inverts --edge-maps maps)")
    edges.add_argument("--edge-maps", type=Path, default=None,
                       help="folder of precomputed edge maps (e.g. HED) with the photos' stems, used instead of Canny")
    edges.add_argument("--split", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"),
                       help="fractions of photos per split, summing to 1 (default: 0.8 0.1 0.1)")
    edges.add_argument("--seed", type=int, default=0, help="seed of the split's shuffle (default: %(default)s)")
    edges.add_argument("--format", dest="image_format", choices=tuple(FORMATS), default="jpg",
                       help="file format of the pairs (default: %(default)s)")
    edges.add_argument("--overwrite", action="store_true",
                       help="replace DST/train, DST/val and DST/test when DST is not empty")
    edges.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = vars(args)
    del options["command"]
    options["progress"] = not options.pop("quiet")
    options["split"] = tuple(options["split"])
    try:
        summary = prepare_edges(**options)
    except (ValueError, OSError) as error:  # OSError: also a pair that cannot be written (disk full)
        print(f"error: {error}", file=sys.stderr)
        return 2
    _print_summary(summary, args.dst)
    if not any(summary[name] for name in SPLITS):
        print(f"error: no photo of --src {args.src} could be read, so {args.dst} holds no pairs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
