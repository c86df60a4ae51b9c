"""Sample a grid of images from a trained DCGAN, class-conditional, LAPGAN or GAN-CLS generator.

    python -m fastgan.sample --checkpoint runs/dcgan_fashion_mnist/ckpt_00011700.pt --n 64 --output grid.png
    python -m fastgan.sample --checkpoint C --class 3 --output class3.png   # conditional: one class
    python -m fastgan.sample --checkpoint C --output classes.png            # conditional: a row per class
    python -m fastgan.sample --checkpoint L0.pt --checkpoint L1.pt --checkpoint L2.pt --output lapgan.png
                                            # lapgan: one checkpoint per pyramid level, sampled coarse to fine
    python -m fastgan.sample --checkpoint C --text "a red flower" --n 16 --output flower.png   # gancls
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
from PIL import Image

from .families.gancls import caption_length, generate_from_captions
from .families.lapgan import load_pyramid
from .inference import make_folder, open_for_cli, run_cli, save_output
from .models import class_grid_labels
from .visualize import grid


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, action="append",
                   help="a fastgan dcgan, conditional or gancls checkpoint; lapgan: repeat it, one per pyramid "
                        "level")
    p.add_argument("--n", type=int, default=64,
                   help="number of images (default 64); gancls: per caption; a class-conditional model "
                        "(conditional, or lapgan trained with classes) without --class ignores it and draws "
                        "--per-row images of each class")
    p.add_argument("--class", dest="label", type=int, default=None, help="conditional models: sample this class only")
    p.add_argument("--text", action="append", default=None,
                   help="gancls models: --n images of this caption (repeat for several captions)")
    p.add_argument("--per-row", type=int, default=8, help="images per grid row")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same images)")
    p.add_argument("--output", required=True,
                   help="image file for the grid; its extension picks the format (.png, .jpg, .webp, ...); its "
                        "folder is created")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if EMA weights exist")
    return p.parse_args(argv)


def check_output_file(path: Path) -> None:
    """Before any sampling: an --output PIL can write (by its extension) where a file can go."""
    image_format = Image.registered_extensions().get(path.suffix.lower())
    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=image_format)  # what PIL cannot write fails here
    except (KeyError, ValueError, OSError):
        raise SystemExit(f"--output {path}: give an image file name whose extension names a format PIL writes "
                         f"RGB images in, e.g. grid.png") from None
    if path.is_dir():
        raise SystemExit(f"--output {path} is a folder; give an image file name, e.g. {path / 'grid.png'}")
    make_folder(path.parent, "--output")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.n < 1 or args.per_row < 1:
        raise SystemExit(f"--n and --per-row must be >= 1, got {args.n} and {args.per_row}")
    check_output_file(Path(args.output))
    paths, args.checkpoint = args.checkpoint, args.checkpoint[0]
    G, ckpt, device = open_for_cli(args)
    family, g_args = ckpt["family"], ckpt["model_args"]["G"]
    if family == "lapgan":  # all levels as one generator whose noise is every level's noise
        G = load_pyramid(paths, device, ema=not args.no_ema)
        g_args = {"nz": G.latent_size, "num_classes": G.num_classes}
    elif len(paths) > 1:
        raise SystemExit(f"--checkpoint was given {len(paths)} times; only a lapgan pyramid samples from several "
                         f"checkpoints (one per level)")
    if family not in ("dcgan", "conditional", "lapgan", "gancls"):
        raise SystemExit(f"{args.checkpoint} holds a {family} generator; sample needs dcgan or conditional, gancls, "
                         f"or the levels of a lapgan (use python -m fastgan.translate for image-to-image models)")
    conditional = g_args.get("num_classes", 0) > 0
    if args.label is not None and not conditional:
        raise SystemExit(f"--class needs a conditional checkpoint; {args.checkpoint} is {family}")
    if (args.text is not None) != (family == "gancls"):
        raise SystemExit(f"--text goes with gancls checkpoints, and they need it; {args.checkpoint} is {family}")
    g = torch.Generator().manual_seed(args.seed)
    nz = g_args.get("nz", 100)
    with torch.no_grad():
        if family == "gancls":
            try:
                images = generate_from_captions(G, args.text, args.n, caption_length(ckpt), g, device)
            except ValueError as e:
                raise SystemExit(f"--text: {e}") from None
            rows = [row for one in images.split(args.n) for row in one.split(args.per_row)]
        elif not conditional:
            images = G(torch.randn(args.n, nz, generator=g).to(device))
            rows = list(images.split(args.per_row))
        elif args.label is not None:
            num_classes = g_args["num_classes"]
            if not 0 <= args.label < num_classes:
                raise SystemExit(f"--class {args.label} is outside [0, {num_classes}) for this checkpoint")
            labels = torch.full((args.n,), args.label, dtype=torch.long)
            images = G(torch.randn(args.n, nz, generator=g).to(device), labels.to(device))
            rows = list(images.split(args.per_row))
        else:
            num_classes, per_class = g_args["num_classes"], args.per_row
            z = torch.randn(per_class, nz, generator=g).repeat(num_classes, 1)
            images = G(z.to(device), class_grid_labels(num_classes, per_class).to(device))
            rows = list(images.split(per_class))
    path = Path(args.output)
    save_output(grid(rows), path, "--output")
    print(f"fastgan.sample: wrote {len(images)} image(s) in {len(rows)} row(s) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("fastgan.sample", main))
