"""Image-to-image inference with a trained pix2pix generator, or upscaling with an srresnet/srgan one.

    python -m fastgan.translate --checkpoint runs/default/best.pt --input photos/ --output out/
    python -m fastgan.translate --checkpoint runs/srgan/ckpt_00001000.pt --input small/ --output big/

Super-resolution takes each image at its own size and writes it `scale` times larger.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from .config import SUPERRES_FAMILIES
from .data.files import list_images, load_image
from .data.transforms import resize_center_crop, to_tensor
from .inference import open_for_cli, trained_size
from .visualize import save_png, to_uint8


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="a fastgan pix2pix (or converted), srresnet or srgan checkpoint")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the results (PNG, same file names)")
    p.add_argument("--size", type=int, default=None,
                   help="pix2pix: resize (shorter side) and center-crop inputs to this; default: the training crop "
                        "size (srresnet/srgan take every image at its own size)")
    p.add_argument("--aligned", choices=("AtoB", "BtoA"), default=None,
                   help="inputs are A|B side-by-side images: translate the A half (AtoB) or the B half (BtoA)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if EMA weights exist")
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


def load_half(path: Path, aligned: str | None):
    """The decoded image, or its A (AtoB) or B (BtoA) half; None when unreadable."""
    image = load_image(path)
    if image is None or not aligned:
        return image
    half = image.width // 2
    return image.crop((0, 0, half, image.height) if aligned == "AtoB" else (half, 0, 2 * half, image.height))


def load_input(path: Path, size: int, aligned: str | None):
    image = load_half(path, aligned)
    return None if image is None else to_tensor(resize_center_crop(image, size))


def upscale(G, ckpt: dict, args, device) -> int:
    """One image at a time, since sizes differ; the output is scale times the input's size."""
    files = input_files(Path(args.input))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    scale = ckpt["model_args"]["G"]["scale"]
    written = skipped = 0
    for path in tqdm(files, unit="img", file=sys.stdout):
        image = load_half(path, args.aligned)
        if image is None:
            skipped += 1
            continue
        with torch.no_grad():
            y = G(to_tensor(image)[None].to(device))
        save_png(to_uint8(y)[0], out / f"{path.stem}.png")
        written += 1
    print(f"fastgan.translate: upscaled {written} image(s) x{scale} into {out}"
          + (f"; skipped {skipped} unreadable file(s) (see warnings)" if skipped else ""))
    return 0 if written else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    G, ckpt, device = open_for_cli(args)
    if ckpt["family"] in SUPERRES_FAMILIES:
        if args.size is not None:
            raise SystemExit(f"--size does not apply to {ckpt['family']}: every image is upscaled at its own size")
        return upscale(G, ckpt, args, device)
    if ckpt["family"] != "pix2pix":
        raise SystemExit(f"{args.checkpoint} holds a {ckpt['family']} generator; translate needs pix2pix, "
                         f"srresnet or srgan (use python -m fastgan.sample for noise-to-image models)")
    size = args.size or trained_size(ckpt, 256)
    multiple = 2 ** ckpt["model_args"]["G"]["num_downs"]
    if size % multiple:
        raise SystemExit(f"--size {size} must be a multiple of {multiple} (2^num_downs of this U-Net)")
    files = input_files(Path(args.input))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    with tqdm(total=len(files), unit="img", file=sys.stdout) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk = files[start:start + args.batch_size]
            loaded = [(f, load_input(f, size, args.aligned)) for f in chunk]
            good = [(f, x) for f, x in loaded if x is not None]
            skipped += len(chunk) - len(good)
            if good:
                with torch.no_grad():
                    y = G(torch.stack([x for _, x in good]).to(device))
                for (f, _), image in zip(good, to_uint8(y)):
                    save_png(image, out / f"{f.stem}.png")
                    written += 1
            bar.update(len(chunk))
    print(f"fastgan.translate: wrote {written} image(s) to {out}"
          + (f"; skipped {skipped} unreadable file(s) (see warnings)" if skipped else ""))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
