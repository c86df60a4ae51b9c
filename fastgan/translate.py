"""Image-to-image inference with a trained pix2pix generator.

    python -m fastgan.translate --checkpoint runs/default/best.pt --input photos/ --output out/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from .data.files import is_image_file, load_image
from .data.transforms import resize_center_crop, to_tensor
from .inference import load_generator, pick_device, trained_size
from .visualize import save_png, to_uint8


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.translate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a fastgan pix2pix checkpoint (or converted weights)")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the results (PNG, same file names)")
    p.add_argument("--size", type=int, default=None,
                   help="resize (shorter side) and center-crop inputs to this; default: the training crop size")
    p.add_argument("--aligned", choices=("AtoB", "BtoA"), default=None,
                   help="inputs are A|B side-by-side images: translate the A half (AtoB) or the B half (BtoA)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if EMA weights exist")
    return p.parse_args(argv)


def input_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SystemExit(f"--input {path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if is_image_file(p))
    if not files:
        raise SystemExit(f"--input {path}: the folder holds no images")
    return files


def load_input(path: Path, size: int, aligned: str | None):
    image = load_image(path)
    if image is None:
        return None
    if aligned:
        half = image.width // 2
        box = (0, 0, half, image.height) if aligned == "AtoB" else (half, 0, 2 * half, image.height)
        image = image.crop(box)
    return to_tensor(resize_center_crop(image, size))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    device = pick_device(args.device)
    G, ckpt = load_generator(args.checkpoint, device, ema=not args.no_ema)
    if ckpt["family"] != "pix2pix":
        raise SystemExit(f"{args.checkpoint} holds a {ckpt['family']} generator; translate needs pix2pix "
                         f"(use python -m fastgan.sample for noise-to-image models)")
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
