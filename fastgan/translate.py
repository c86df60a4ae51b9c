"""Image-to-image inference with a trained pix2pix generator, or upscaling with an srresnet/srgan one.

    python -m fastgan.translate --checkpoint runs/default/best.pt --input photos/ --output out/
    python -m fastgan.translate --checkpoint runs/srgan_cpu/ckpt_00000064.pt --input small/ --output big/

Super-resolution takes each image at its own size and writes it `scale` times larger.

Each result is --output/<input name without extension>.png. Nothing is translated when that
would overwrite an input file (e.g. --output is the --input folder holding PNGs) or give two
inputs one output name (photo.jpg and photo.png): the error names the files. Images are read
as RGB, or as grayscale for a generator with 1 input channel (e.g. converted reference
weights); with --aligned every input must be two square halves side by side.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from .config import SUPERRES_FAMILIES
from .data.datasets import check_aligned_sizes
from .data.datasets import image_mode as pil_mode
from .data.files import list_images, listing, load_image
from .data.transforms import resize_center_crop, to_tensor
from .inference import (TRAIN_MODE_HELP, check_at_least_one, check_unet_size, make_folder, open_for_cli, run_cli,
                        save_output, trained_size, use_train_mode)
from .visualize import to_uint8


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a fastgan pix2pix (or converted), srresnet or srgan checkpoint")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True,
                   help="folder for the results: NAME.png for each input NAME.ext; refused when that would overwrite "
                        "an input or give two inputs (NAME.jpg, NAME.png) one output")
    p.add_argument("--size", type=int, default=None,
                   help="pix2pix: resize (shorter side) and center-crop inputs to this; default: the training crop "
                        "size (srresnet/srgan take every image at its own size)")
    p.add_argument("--aligned", choices=("AtoB", "BtoA"), default=None,
                   help="inputs are A|B images (two square halves side by side, checked): translate the A half "
                        "(AtoB) or the B half (BtoA)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if EMA weights exist")
    p.add_argument("--train-mode", action="store_true", help=TRAIN_MODE_HELP)
    return p.parse_args(argv)


def input_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise SystemExit(f"--input {path}: no such file or folder")
    try:
        return list_images(path, "--input folder")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None


def file_id(path: Path) -> tuple[int, int]:
    """Equal for two names of one file (a link, or another spelling on a case-insensitive disk)."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def output_paths(files: list[Path], out: Path) -> list[Path]:
    """out/<stem>.png for each input, checked before anything is written: refuses a name two inputs share (also
    when they differ only in case, one file on macOS and Windows) and an output that is one of the inputs (same
    folder, or a link to it)."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--output {out} is a file; give a folder for the results")
    targets = [out / f"{path.stem}.png" for path in files]
    sources: dict[str, list[tuple[Path, Path]]] = {}
    for path, target in zip(files, targets):
        sources.setdefault(target.name.casefold(), []).append((path, target))
    clashes = [pairs for pairs in sources.values() if len(pairs) > 1]
    if clashes:
        pairs = clashes[0]
        written = listing(sorted({str(target) for _, target in pairs}))
        more = f" ({len(clashes) - 1} more name(s) clash)" if len(clashes) > 1 else ""
        inputs = listing([str(p) for p, _ in pairs])
        raise SystemExit(f"--input {inputs} would be written to one file, {written}{more}; "
                         f"outputs are named <input name>.png (names differing only in case are one file on macOS "
                         f"and Windows), so rename or move all but one of them")
    inputs = {file_id(path): path for path in files}
    for target in targets:
        if target.exists():
            original = inputs.get(file_id(target))
            if original is not None:
                raise SystemExit(f"--output {out}: the result {target} would overwrite the input {original}; "
                                 f"give another --output folder")
    return targets


def image_mode(family: str, g_args: dict) -> str:
    """PIL mode of the images the generator reads (its in_ch), refusing channel counts no image file has."""
    in_ch, out_ch = g_args.get("in_ch", 3), g_args.get("out_ch", 3)
    if in_ch not in (1, 3) or out_ch not in (1, 3):
        raise SystemExit(f"this {family} generator maps {in_ch}-channel to {out_ch}-channel images; translate reads "
                         f"and writes grayscale (1 channel) or RGB (3 channel) images only")
    return pil_mode(in_ch)


def load_half(path: Path, aligned: str | None, mode: str):
    """The decoded image in `mode`, or its A (AtoB) or B (BtoA) half; None when unreadable."""
    image = load_image(path, mode)
    if image is None or not aligned:
        return image
    half = image.width // 2
    return image.crop((0, 0, half, image.height) if aligned == "AtoB" else (half, 0, 2 * half, image.height))


def load_input(path: Path, size: int, aligned: str | None, mode: str):
    image = load_half(path, aligned, mode)
    return None if image is None else to_tensor(resize_center_crop(image, size))


def planned_outputs(args) -> tuple[list[Path], list[Path]]:
    """(input files, their output paths), checked; the output folder exists afterwards."""
    files = input_files(Path(args.input))
    if args.aligned:
        try:
            check_aligned_sizes(files)
        except ValueError as e:
            raise SystemExit(f"--aligned: {e}") from None
    out = Path(args.output)
    targets = output_paths(files, out)
    make_folder(out, "--output")
    return files, targets


def upscale(G, ckpt: dict, args, device, mode: str) -> int:
    """One image at a time, since sizes differ; the output is scale times the input's size."""
    files, targets = planned_outputs(args)
    scale = ckpt["model_args"]["G"]["scale"]
    written = skipped = 0
    for path, target in tqdm(list(zip(files, targets)), unit="img", file=sys.stdout):
        image = load_half(path, args.aligned, mode)
        if image is None:
            skipped += 1
            continue
        with torch.no_grad():
            y = G(to_tensor(image)[None].to(device))
        save_output(to_uint8(y)[0], target, "--output")
        written += 1
    print(f"fastgan.translate: upscaled {written} image(s) x{scale} into {args.output}"
          + (f"; skipped {skipped} unreadable file(s) (see warnings)" if skipped else ""))
    return 0 if written else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    check_at_least_one(args, "--batch-size", "--size")
    G, ckpt, device = open_for_cli(args)
    family = ckpt["family"]
    if family not in (*SUPERRES_FAMILIES, "pix2pix"):
        raise SystemExit(f"{args.checkpoint} holds a {family} generator; translate needs pix2pix, "
                         f"srresnet or srgan (use python -m fastgan.sample for noise-to-image models)")
    if args.train_mode:
        use_train_mode(G, family)
    mode = image_mode(family, ckpt["model_args"]["G"])
    if family in SUPERRES_FAMILIES:
        if args.size is not None:
            raise SystemExit(f"--size does not apply to {family}: every image is upscaled at its own size")
        return upscale(G, ckpt, args, device, mode)
    size = args.size or trained_size(ckpt, 256)
    check_unet_size(size, ckpt)
    files, targets = planned_outputs(args)
    jobs = list(zip(files, targets))
    written = skipped = 0
    with tqdm(total=len(jobs), unit="img", file=sys.stdout) as bar:
        for start in range(0, len(jobs), args.batch_size):
            chunk = jobs[start:start + args.batch_size]
            loaded = [(target, load_input(path, size, args.aligned, mode)) for path, target in chunk]
            good = [(target, x) for target, x in loaded if x is not None]
            skipped += len(chunk) - len(good)
            if good:
                with torch.no_grad():
                    y = G(torch.stack([x for _, x in good]).to(device))
                for (target, _), image in zip(good, to_uint8(y)):
                    save_output(image, target, "--output")
                    written += 1
            bar.update(len(chunk))
    print(f"fastgan.translate: wrote {written} image(s) to {args.output}"
          + (f"; skipped {skipped} unreadable file(s) (see warnings)" if skipped else ""))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(run_cli("fastgan.translate", main))
