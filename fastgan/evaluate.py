"""Score a trained generator on held-out data.

Image-to-image (pix2pix): L1, PSNR, SSIM and sharpness (variance of the Laplacian) of the
outputs against the targets, plus FID/KID when --inception names a local Inception file.
Noise-to-image (dcgan, conditional): FID/KID of generated images against --data.
Super-resolution (srresnet, srgan): PSNR and SSIM on the Y channel with a border crop of the
scale factor, for the network and for bicubic upscaling (the baseline row): each image of
--data is cut to a multiple of the scale, shrunk with PIL bicubic and upscaled back.

    python -m fastgan.evaluate --checkpoint runs/default/best.pt --data default
    python -m fastgan.evaluate --checkpoint C --data data/facades/test --direction BtoA --json scores.json
    python -m fastgan.evaluate --checkpoint runs/srgan/ckpt_00001000.pt --data default --split test
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import metrics
from .config import SUPERRES_FAMILIES
from .data import (AlignedDataset, DefaultEdges2Photo, ImageFolderDataset, collate_skipping, downscale,
                   fashion_mnist)
from .data.default import load_photo, default_photo_names
from .data.files import list_images, load_image
from .data.transforms import to_tensor
from .inference import open_for_cli, trained_size


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True,
                   help="pix2pix: a folder of aligned A|B images, or 'default' for the embedded set; "
                        "dcgan/conditional: an image folder or 'fashion_mnist'; srresnet/srgan: a folder of "
                        "high-resolution photos, or 'default' for the embedded photos")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split of the embedded set")
    p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"))
    p.add_argument("--size", type=int, default=None,
                   help="evaluation image size (default: the training size; srresnet/srgan: a centre crop of "
                        "this side, default the whole image)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-generated", type=int, default=1000, help="dcgan/conditional: images generated for FID/KID")
    p.add_argument("--inception", default=None,
                   help="TorchScript Inception feature extractor for FID/KID (no weights are downloaded)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-ema", action="store_true")
    return p.parse_args(argv)


def pix2pix_scores(G, args, size: int, device, fid) -> dict:
    if args.data == "default":
        dataset = DefaultEdges2Photo(args.split, image_size=size)
    else:
        dataset = AlignedDataset(args.data, direction=args.direction, load_size=size, crop_size=size,
                                 flip=False, train=False)
    outputs, targets = [], []
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_skipping)
    for batch in tqdm(loader, desc="translating", unit="batch", file=sys.stdout):
        if "A" not in batch:
            continue
        with torch.no_grad():
            y = G(batch["A"].to(device)).float().cpu()
        outputs.append(y)
        targets.append(batch["B"])
        if fid is not None:
            fid.update(y, real=False)
            fid.update(batch["B"], real=True)
    if not outputs:
        raise SystemExit(f"{args.data}: no readable image pairs")
    scores = metrics.evaluate_pairs(torch.cat(outputs), torch.cat(targets))
    scores["images"] = sum(len(o) for o in outputs)
    return scores


def superres_photos(args):
    """(name, PIL image) of the high-resolution images to score, decoded lazily."""
    if args.data == "default":
        return ((stem, load_photo(stem)) for stem in default_photo_names(args.split))
    try:
        files = list_images(args.data, "--data folder")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    return ((path.stem, load_image(path)) for path in files)


def superres_scores(G, ckpt, args, device) -> dict:
    """Per-image Y PSNR/SSIM of the network and of bicubic upscaling, averaged over --data."""
    scale = ckpt["model_args"]["G"]["scale"]
    rows: dict[str, list[torch.Tensor]] = {"psnr_y": [], "ssim_y": [], "bicubic_psnr_y": [], "bicubic_ssim_y": []}
    for name, photo in tqdm(superres_photos(args), desc="upscaling", unit="img", file=sys.stdout):
        if photo is None:
            continue
        width, height = (args.size, args.size) if args.size else photo.size
        width, height = width - width % scale, height - height % scale
        if min(width, height) > min(photo.size) or min(width, height) - 2 * scale < metrics.SSIM_WINDOW:
            print(f"fastgan.evaluate: skipping {name}: {photo.width}x{photo.height} is too small")
            continue
        left, top = (photo.width - width) // 2, (photo.height - height) // 2
        hr = photo.crop((left, top, left + width, top + height))
        lr = to_tensor(downscale(hr, scale))[None]
        target = to_tensor(hr)[None]
        with torch.no_grad():
            output = G(lr.to(device)).float().clamp(-1, 1).cpu()
        bicubic = metrics.bicubic_upscale(lr, scale)
        for prefix, image in (("", output), ("bicubic_", bicubic)):
            rows[f"{prefix}psnr_y"].append(metrics.psnr_y(image, target, scale))
            rows[f"{prefix}ssim_y"].append(metrics.ssim_y(image, target, scale))
    if not rows["psnr_y"]:
        raise SystemExit(f"{args.data}: no readable image large enough to score")
    scores = {key: float(torch.cat(values).mean()) for key, values in rows.items()}
    scores["images"] = len(rows["psnr_y"])
    scores["scale"] = scale
    return scores


def print_superres_table(family: str, scores: dict) -> None:
    print(f"x{scores['scale']} on {scores['images']} image(s), Y channel, border {scores['scale']}")
    print(f"{'method':<10}  {'PSNR (dB)':>9}  {'SSIM':>6}")
    print(f"{family:<10}  {scores['psnr_y']:>9.2f}  {scores['ssim_y']:>6.4f}")
    print(f"{'bicubic':<10}  {scores['bicubic_psnr_y']:>9.2f}  {scores['bicubic_ssim_y']:>6.4f}")


def generative_scores(G, ckpt, args, size: int, device, fid) -> dict:
    if fid is None:
        raise SystemExit("noise-to-image models are scored by FID/KID, which need --inception "
                         "(a local TorchScript Inception file; nothing can be downloaded)")
    g_args = ckpt["model_args"]["G"]
    channels = g_args.get("out_ch", 3)
    dataset = (fashion_mnist(split="test", image_size=size, fit="pad" if size <= 32 else "resize") if args.data == "fashion_mnist"
               else ImageFolderDataset(args.data, image_size=size, channels=channels))
    for batch in tqdm(DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate_skipping),
                      desc="real images", unit="batch", file=sys.stdout):
        if "image" in batch:
            fid.update(batch["image"], real=True)
    g = torch.Generator().manual_seed(0)
    done = 0
    with tqdm(total=args.num_generated, desc="generated", unit="img", file=sys.stdout) as bar:
        while done < args.num_generated:
            n = min(args.batch_size, args.num_generated - done)
            z = torch.randn(n, g_args.get("nz", 100), generator=g).to(device)
            with torch.no_grad():
                if ckpt["family"] == "conditional":
                    labels = torch.randint(g_args["num_classes"], (n,), generator=g).to(device)
                    images = G(z, labels)
                else:
                    images = G(z)
            fid.update(images.float().cpu(), real=False)
            done += n
            bar.update(n)
    return {"images": done}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    G, ckpt, device = open_for_cli(args)
    if ckpt["family"] == "gancls":
        raise SystemExit(f"{args.checkpoint} is a gancls (text-to-image) model, which fastgan.evaluate does not score "
                         f"yet; draw images for captions with python -m fastgan.sample --text")
    if ckpt["family"] == "lapgan":
        raise SystemExit(f"{args.checkpoint} is one level of a LAPGAN pyramid, which fastgan.evaluate does not score "
                         f"yet; draw full images with python -m fastgan.sample --checkpoint L0.pt --checkpoint L1.pt ...")
    size = args.size or trained_size(ckpt, 256)
    fid = None
    if args.inception:
        if not Path(args.inception).is_file():
            raise SystemExit(f"--inception {args.inception}: file not found; expected {metrics.EXPECTED_INCEPTION}")
        fid = metrics.FrechetAndKernelDistance(args.inception, device=device)
    if ckpt["family"] in SUPERRES_FAMILIES:
        if fid is not None:
            raise SystemExit("--inception: FID/KID are not computed for super-resolution (images differ in size)")
        scores = superres_scores(G, ckpt, args, device)
        print_superres_table(ckpt["family"], scores)
    elif ckpt["family"] == "pix2pix":
        scores = pix2pix_scores(G, args, size, device, fid)
    else:
        scores = generative_scores(G, ckpt, args, size, device, fid)
    if fid is not None:
        scores.update(fid.compute())
    elif ckpt["family"] not in SUPERRES_FAMILIES:
        print("fastgan.evaluate: FID/KID skipped: pass --inception with a local Inception file to get them")
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "data": args.data, **scores},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
