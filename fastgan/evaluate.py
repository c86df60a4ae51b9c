"""Score a trained generator on held-out data.

Image-to-image (pix2pix): L1, PSNR, SSIM and sharpness (variance of the Laplacian) of the
outputs against the targets, plus FID/KID when --inception names a local Inception file.
Noise-to-image (dcgan, conditional): FID/KID of generated images against --data.
LAPGAN: one --checkpoint per pyramid level; full-resolution images sampled coarse to fine,
the spread of each Laplacian band of generated and real images (no weights file needed),
and FID/KID with --inception.
GAN-CLS: an image for the caption of each real image of --data; the model's own
discriminator scores real images under right and wrong captions and the generated images
under theirs (no weights file needed), and FID/KID with --inception.
Super-resolution (srresnet, srgan): PSNR and SSIM on the Y channel with a border crop of the
scale factor, for the network and for bicubic upscaling (the baseline row): each image of
--data is cut to a multiple of the scale, shrunk with PIL bicubic and upscaled back.

Options that would not change the result are refused rather than ignored: --split goes with
--data default, --direction with pix2pix on an A|B folder, --fashion-mnist-root with --data
fashion_mnist (which the dcgan, conditional, lapgan and gancls families take).

    python -m fastgan.evaluate --checkpoint runs/default/best.pt --data default
    python -m fastgan.evaluate --checkpoint C --data data/facades/test --direction BtoA --json scores.json
    python -m fastgan.evaluate --checkpoint runs/srgan_cpu/ckpt_00000064.pt --data default --split test
    python -m fastgan.evaluate --checkpoint L0.pt --checkpoint L1.pt --checkpoint L2.pt --data default --split train
    python -m fastgan.evaluate --checkpoint runs/gancls_cpu/ckpt_00000160.pt --data default
    python -m fastgan.evaluate --checkpoint C --data fashion_mnist --fashion-mnist-root ~/fmnist --inception I.pt
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import metrics
from .config import SUPERRES_FAMILIES
from .data import (AlignedDataset, CaptionedFashionMNIST, CaptionedImageFolder, ClassFolderDataset,
                   DefaultCaptionedPhotos, DefaultEdges2Photo, ImageFolderDataset, collate_skipping, downscale,
                   fashion_mnist)
from .data.default import load_photo, default_photo_names
from .data.files import list_images, load_image
from .data.idx import FASHION_MNIST_FILES, FASHION_MNIST_ROOT
from .data.transforms import to_tensor
from .families.gancls import caption_length, wrong_pairs
from .families.lapgan import load_pyramid
from .inference import (TRAIN_MODE_HELP, check_at_least_one, check_unet_size, open_for_cli, run_cli, trained_setting,
                        trained_size, use_train_mode)
from .models import build_model
from .outputs import write_problem
from .pyramid import laplacian_pyramid

GENERATING_FAMILIES = ("dcgan", "conditional", "lapgan", "gancls")  # the ones --num-generated applies to
DEFAULT_NUM_GENERATED = 1000
DEFAULT_SPLIT = "test"
NOISE_SEED = 0
# Channels of the named data sets; a folder is read with the model's channels.
DATA_CHANNELS = {"fashion_mnist": 1, "default": 3}
# What the families that cannot take --data fashion_mnist are scored on.
SCORED_ON = {"pix2pix": "aligned A|B image pairs", "srresnet": "high-resolution photos",
             "srgan": "high-resolution photos"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastgan.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, action="append",
                   help="a fastgan checkpoint; lapgan: repeat it, one per pyramid level (any order)")
    p.add_argument("--data", required=True,
                   help="pix2pix: a folder of aligned A|B images, or 'default' for the embedded set; "
                        "dcgan/conditional/lapgan: an image folder (class-conditional models: a folder of class "
                        "sub-folders), 'fashion_mnist' (its test split) or 'default' (crops of the embedded photos "
                        "of --split); gancls: a captioned image folder (a same-named .txt of captions beside each "
                        "image), 'fashion_mnist' (test split, attribute captions) or 'default' (the nine embedded "
                        "photos with their shipped captions); srresnet/srgan: a folder of high-resolution photos, "
                        "or 'default' for the embedded photos. Write ./default or ./fashion_mnist for folders of "
                        "those names")
    p.add_argument("--fashion-mnist-root", default=None,
                   help=f"--data fashion_mnist: the folder holding {' and '.join(FASHION_MNIST_FILES['test'])} "
                        f"(.gz or not; default {FASHION_MNIST_ROOT}, where Debian's dataset-fashion-mnist puts them)")
    p.add_argument("--split", default=None, choices=("train", "val", "test"),
                   help=f"--data default only: split of the embedded set (default {DEFAULT_SPLIT}); gancls trains on "
                        f"all nine photos and takes none")
    p.add_argument("--direction", default=None, choices=("AtoB", "BtoA"),
                   help="pix2pix on a folder of A|B images only: translate A to B or B to A (default: the direction "
                        "the model was trained in, data.direction of its checkpoint); the embedded set is edges to "
                        "photos (AtoB) only")
    p.add_argument("--size", type=int, default=None,
                   help="evaluation image size (default: the training size; pix2pix: a multiple of 2^num_downs; "
                        "srresnet/srgan: a centre crop of this side, default the whole image; dcgan/conditional/lapgan/"
                        "gancls: only the training size, that of the generated images)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-generated", type=int, default=None,
                   help=f"dcgan/conditional/lapgan: images generated for the scores (default "
                        f"{DEFAULT_NUM_GENERATED}); gancls: default one per real image of --data, from its caption")
    p.add_argument("--inception", default=None,
                   help="TorchScript Inception feature extractor for FID/KID (no weights are downloaded)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file (its folder is created)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--train-mode", action="store_true", help=TRAIN_MODE_HELP)
    return p.parse_args(argv)


def pix2pix_scores(G, ckpt, args, size: int, device, fid) -> dict:
    channels = ckpt["model_args"]["G"].get("in_ch", 3), ckpt["model_args"]["G"].get("out_ch", 3)
    if channels != (3, 3):
        raise SystemExit(f"--checkpoint {args.checkpoint}: this pix2pix generator maps {channels[0]}-channel to "
                         f"{channels[1]}-channel images; evaluate scores RGB pairs (3 to 3 channels) only")
    try:
        if args.data == "default":
            dataset = DefaultEdges2Photo(args.split or DEFAULT_SPLIT, image_size=size)
        else:
            direction = args.direction or trained_setting(ckpt, "data", "direction", "AtoB")
            dataset = AlignedDataset(args.data, direction=direction, load_size=size, crop_size=size,
                                     flip=False, train=False)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--data: {e}") from None
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
        return ((stem, load_photo(stem)) for stem in default_photo_names(args.split or DEFAULT_SPLIT))
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


# ----------------------------------------------------------------------------- real and generated image sets

def check_data_channels(data: str, channels: int, family: str) -> None:
    have = DATA_CHANNELS.get(data)
    if have is not None and have != channels:
        raise SystemExit(f"--data {data} has {have}-channel images, but this {family} model makes {channels}-channel "
                         f"ones")


def fashion_mnist_test(args, size: int) -> Dataset:
    """Fashion-MNIST's test split from --fashion-mnist-root, padded to 32 px or resized to larger sizes."""
    root = Path(args.fashion_mnist_root or FASHION_MNIST_ROOT)
    try:
        return fashion_mnist(root, split="test", image_size=size, fit="pad" if size <= 32 else "resize")
    except FileNotFoundError:
        names = " and ".join(f"{name}[.gz]" for name in FASHION_MNIST_FILES["test"])
        raise SystemExit(f"--data fashion_mnist: {names} not found in {root}; install Debian's dataset-fashion-mnist "
                         f"(it puts them in {FASHION_MNIST_ROOT}) or pass --fashion-mnist-root with the folder that "
                         f"holds them") from None


def real_images(args, size: int, channels: int, labelled: bool, family: str) -> tuple[Dataset, str]:
    """(dataset, key of its full-resolution image) of --data for the noise-to-image families."""
    check_data_channels(args.data, channels, family)
    try:
        if args.data == "fashion_mnist":
            return fashion_mnist_test(args, size), "image"
        if args.data == "default":
            return DefaultEdges2Photo(args.split or DEFAULT_SPLIT, image_size=size, flip=False), "B"
        folder = ClassFolderDataset if labelled else ImageFolderDataset
        return folder(args.data, image_size=size, channels=channels), "image"
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--data: {e}") from None


def captioned_images(args, size: int, channels: int, caption_len: int) -> Dataset:
    """--data as {image, tokens, source} samples, one caption per image (drawn with seed 0)."""
    check_data_channels(args.data, channels, "gancls")
    try:
        if args.data == "default":
            return DefaultCaptionedPhotos(size, caption_len, flip=False)
        if args.data == "fashion_mnist":
            return CaptionedFashionMNIST(fashion_mnist_test(args, size), caption_len)
        return CaptionedImageFolder(args.data, size, caption_len, channels)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--data: {e}") from None


def batches(dataset: Dataset, key: str, batch_size: int, desc: str):
    """The decodable batches of a dataset, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_skipping)
    for batch in tqdm(loader, desc=desc, unit="batch", file=sys.stdout):
        if key in batch:
            yield batch


def image_noise(noise, n: int, g: torch.Generator) -> list[torch.Tensor]:
    """The noise of n images, `noise(g)` drawn once per image: the i-th generated image gets the same noise
    whatever the batches (torch.randn(n, k) is not the first rows of torch.randn(m, k), and labels drawn
    between batches' noise would shift it)."""
    return [torch.cat(parts) for parts in zip(*(noise(g) for _ in range(n)))]


def generated_images(G, noise, total: int, batch_size: int, device):
    """Batches of G's images (CPU, float, clamped to [-1, 1] as a saved image is) for the noise `noise(g)` of
    each image, drawn from one CPU stream seeded with NOISE_SEED: a rerun scores the same images, with any
    --batch-size and on any --device."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    done = 0
    with tqdm(total=total, desc="generated", unit="img", file=sys.stdout) as bar:
        while done < total:
            n = min(batch_size, total - done)
            with torch.no_grad():
                images = G(*(part.to(device) for part in image_noise(noise, n, g)))
            yield images.float().clamp(-1, 1).cpu()
            done += n
            bar.update(n)


def generative_scores(G, ckpt, args, size: int, device, fid) -> dict:
    if fid is None:
        raise SystemExit("noise-to-image models are scored by FID/KID, which need --inception "
                         "(a local TorchScript Inception file; nothing can be downloaded)")
    g_args = ckpt["model_args"]["G"]
    conditional = ckpt["family"] == "conditional"
    dataset, key = real_images(args, size, g_args.get("out_ch", 3), conditional, ckpt["family"])
    for batch in batches(dataset, key, args.batch_size, "real images"):
        fid.update(batch[key], real=True)

    def noise(g):
        z = torch.randn(1, g_args.get("nz", 100), generator=g)
        return (z, torch.randint(g_args["num_classes"], (1,), generator=g)) if conditional else (z,)

    done = 0
    for images in generated_images(G, noise, args.num_generated or DEFAULT_NUM_GENERATED, args.batch_size, device):
        fid.update(images, real=False)
        done += len(images)
    return {"images": done}


# ----------------------------------------------------------------------------- LAPGAN

class BandSpread:
    """Standard deviation of every Laplacian band of an image set, and how much its coarsest images vary.

    Needs no weights file. A LAPGAN level whose generated band is much stronger or weaker
    than the real one paints too much or too little detail at that scale; a coarse spread
    far below the real one means level 0 has collapsed onto a few images.
    """

    def __init__(self, levels: int):
        self.levels = levels
        self.sums = [0.0] * levels
        self.squares = [0.0] * levels
        self.values = [0] * levels
        self.images = 0
        self.coarse_sum: torch.Tensor | float = 0.0
        self.coarse_squares: torch.Tensor | float = 0.0

    def update(self, images: torch.Tensor) -> None:
        bands = laplacian_pyramid(images.to(torch.float64), self.levels)
        for k, band in enumerate(bands):
            self.sums[k] += float(band.sum())
            self.squares[k] += float(band.square().sum())
            self.values[k] += band.numel()
        self.coarse_sum = self.coarse_sum + bands[0].sum(0)
        self.coarse_squares = self.coarse_squares + bands[0].square().sum(0)
        self.images += images.shape[0]

    def band_std(self) -> list[float]:
        """Population standard deviation of all values of band k (k = 0: the coarsest low-pass image)."""
        return [math.sqrt(max(sq / n - (s / n) ** 2, 0.0)) for s, sq, n in zip(self.sums, self.squares, self.values)]

    def coarse_spread(self) -> float:
        """Standard deviation across images of each value of the coarsest image, averaged over its values."""
        mean = self.coarse_sum / self.images
        return float((self.coarse_squares / self.images - mean.square()).clamp_min(0).sqrt().mean())


def lapgan_scores(paths: list[str], args, size: int, device, fid) -> dict:
    """Full-resolution samples of the joined levels against --data: band spreads, and FID/KID with --inception."""
    G = load_pyramid(paths, device, ema=not args.no_ema)
    levels, channels = len(G.levels), G.levels[-1].image_shape[0]
    dataset, key = real_images(args, size, channels, G.num_classes > 0, "lapgan")
    real, generated = BandSpread(levels), BandSpread(levels)
    for batch in batches(dataset, key, args.batch_size, "real images"):
        real.update(batch[key])
        if fid is not None:
            fid.update(batch[key], real=True)
    if real.images == 0:
        raise SystemExit(f"--data {args.data}: no readable image")

    def noise(g):
        z = torch.randn(1, G.latent_size, generator=g)
        return (z, torch.randint(G.num_classes, (1,), generator=g)) if G.num_classes else (z,)

    for images in generated_images(G, noise, args.num_generated or DEFAULT_NUM_GENERATED, args.batch_size, device):
        generated.update(images)
        if fid is not None:
            fid.update(images, real=False)
    scores = {"images": generated.images, "real_images": real.images}
    for k, (r, g) in enumerate(zip(real.band_std(), generated.band_std())):
        scores[f"band_std_{k}_real"], scores[f"band_std_{k}_generated"] = r, g
    scores["coarse_spread_real"], scores["coarse_spread_generated"] = real.coarse_spread(), generated.coarse_spread()
    return scores


# ----------------------------------------------------------------------------- GAN-CLS

def load_matching_discriminator(ckpt: dict, path: str, device) -> torch.nn.Module:
    """The checkpoint's D in training mode: its BatchNorm layers normalize each batch by that batch's own
    statistics, as when it judged real, wrong-caption and generated batches during training. Its running
    statistics blend those three kinds of batch, and with them the scores lose their meaning (docs/metrics.md)."""
    weights = ckpt["models"].get("D")
    if weights is None:
        raise SystemExit(f"--checkpoint {path} holds no discriminator ('D'), which the gancls matching scores need")
    D = build_model("gancls", "D", **ckpt["model_args"]["D"])
    D.load_state_dict(weights)
    return D.to(device).train()


def gancls_scores(G, ckpt, args, size: int, device, fid) -> dict:
    """The model's own D on (real, right caption), (real, wrong caption) and (generated, its caption), and FID/KID
    of one generated image per caption of --data with --inception."""
    if args.batch_size < 2:
        raise SystemExit(f"--batch-size must be >= 2 for gancls: a real image's wrong caption is its batch "
                         f"neighbour's, as in training; got {args.batch_size}")
    D = load_matching_discriminator(ckpt, args.checkpoint, device)
    dataset = captioned_images(args, size, ckpt["model_args"]["G"].get("out_ch", 3), caption_length(ckpt))
    right, wrong, wins, captions = [], [], [], []
    for batch in batches(dataset, "image", args.batch_size, "real images"):
        images, tokens = batch["image"].to(device), batch["tokens"].to(device)
        rolled, valid = wrong_pairs(tokens, batch["source"].to(device))
        with torch.no_grad():
            on_right, on_wrong = D(images, tokens).float(), D(images, rolled).float()
        right.append(on_right.cpu())
        wrong.append(on_wrong[valid].cpu())
        wins.append((on_right > on_wrong)[valid].cpu())
        captions.append(batch["tokens"])
        if fid is not None:
            fid.update(batch["image"], real=True)
    if not captions:
        raise SystemExit(f"--data {args.data}: no readable image")
    right, wrong, wins, captions = torch.cat(right), torch.cat(wrong), torch.cat(wins), torch.cat(captions)
    if wrong.numel() == 0:
        raise SystemExit(f"--data {args.data}: no two neighbouring images have captions of different pictures, so "
                         f"no (image, wrong caption) pair can be scored")
    total = args.num_generated or len(captions)
    g = torch.Generator().manual_seed(NOISE_SEED)
    fake = []
    for tokens in tqdm(captions[torch.arange(total) % len(captions)].split(args.batch_size), desc="generated",
                       unit="batch", file=sys.stdout):
        tokens = tokens.to(device)
        with torch.no_grad():
            (z,) = image_noise(lambda stream: (torch.randn(1, G.nz, generator=stream),), len(tokens), g)
            images = G(z.to(device), tokens)
            fake.append(D(images, tokens).float().cpu())
        if fid is not None:
            fid.update(images.float().cpu(), real=False)
    d_real_right, d_real_wrong = float(right.double().mean()), float(wrong.double().mean())
    return {"images": total, "real_images": len(captions), "wrong_pairs": wrong.numel(),
            "d_real_right": d_real_right, "d_real_wrong": d_real_wrong, "d_match_gap": d_real_right - d_real_wrong,
            "d_match_accuracy": float(wins.double().mean()), "d_fake_right": float(torch.cat(fake).double().mean())}


# ----------------------------------------------------------------------------- command line

def check_options(args, family: str) -> None:
    """Refuses --data and options that a family does not use, so that no option is silently ignored."""
    if args.data == "fashion_mnist" and family in SCORED_ON:
        raise SystemExit(f"--data fashion_mnist: a {family} model is scored on {SCORED_ON[family]}; give a folder of "
                         f"them or 'default' (write ./fashion_mnist for a folder of that name)")
    if args.split is not None and args.data != "default":
        raise SystemExit(f"--split picks a split of the embedded photos (--data default); leave it out for --data "
                         f"{args.data}")
    if args.direction is not None and (family != "pix2pix" or args.data == "default"):
        scored = "the embedded set (edges to photos)" if family == "pix2pix" else f"a {family} model"
        raise SystemExit(f"--direction applies to pix2pix on a folder of A|B images; leave it out for {scored}")
    if args.fashion_mnist_root is not None and args.data != "fashion_mnist":
        raise SystemExit(f"--fashion-mnist-root goes with --data fashion_mnist; leave it out for --data {args.data}")


def json_number(value):
    """A score as strict JSON holds it: JSON has no infinity (PSNR of identical images) or NaN, so
    those are written as the strings "inf", "-inf" and "nan", which float() reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def prepare_json(path: str) -> None:
    """Creates the folder of --json up front, so a bad path fails before the evaluation runs, not after."""
    if Path(path).is_dir():
        raise SystemExit(f"--json {path} is a folder; give a file name")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"--json {path}: cannot create its folder: {e.strerror}") from None
    problem = write_problem(Path(path).parent)
    if problem:
        raise SystemExit(f"--json {path}: cannot write into its folder: {problem}")


def main(argv=None) -> int:
    args = parse_args(argv)
    check_at_least_one(args, "--batch-size", "--num-generated", "--size")
    paths, args.checkpoint = args.checkpoint, args.checkpoint[0]
    G, ckpt, device = open_for_cli(args)
    family = ckpt["family"]
    if len(paths) > 1 and family != "lapgan":
        raise SystemExit(f"--checkpoint was given {len(paths)} times, but {args.checkpoint} holds a {family} model; "
                         f"only a lapgan pyramid is evaluated from several checkpoints (one per level)")
    if args.split is not None and family == "gancls":
        raise SystemExit("--split picks a split of the embedded photos; gancls models train on all nine of them, "
                         "so leave --split out")
    if args.num_generated is not None and family not in GENERATING_FAMILIES:
        raise SystemExit(f"--num-generated: a {family} model is scored on the images of --data; leave it out")
    check_options(args, family)
    if args.train_mode:
        use_train_mode(G, family)
    size = args.size or trained_size(ckpt, 256)
    if family == "pix2pix":
        check_unet_size(size, ckpt)
    if family in GENERATING_FAMILIES and size != trained_size(ckpt, size):  # real images at the generated size
        raise SystemExit(f"--size {args.size}: a {family} model generates {trained_size(ckpt, size)}-pixel images "
                         f"only; leave --size out")
    fid = None
    if args.inception:
        if not Path(args.inception).is_file():
            raise SystemExit(f"--inception {args.inception}: file not found; expected {metrics.EXPECTED_INCEPTION}")
        try:
            fid = metrics.FrechetAndKernelDistance(args.inception, device=device)
        except ValueError as e:
            raise SystemExit(f"--inception: {e}") from None
    if args.json:
        prepare_json(args.json)
    if family in SUPERRES_FAMILIES:
        if fid is not None:
            raise SystemExit("--inception: FID/KID are not computed for super-resolution (images differ in size)")
        scores = superres_scores(G, ckpt, args, device)
        print_superres_table(family, scores)
    elif family == "pix2pix":
        scores = pix2pix_scores(G, ckpt, args, size, device, fid)
    elif family == "lapgan":
        scores = lapgan_scores(paths, args, size, device, fid)
    elif family == "gancls":
        scores = gancls_scores(G, ckpt, args, size, device, fid)
    else:
        scores = generative_scores(G, ckpt, args, size, device, fid)
    if fid is not None:
        try:
            scores.update(fid.compute())
        except ValueError as e:
            raise SystemExit(f"FID/KID: {e}") from None
    elif family not in SUPERRES_FAMILIES:
        print("fastgan.evaluate: FID/KID skipped: pass --inception with a local Inception file to get them")
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        # Six significant digits rather than fixed decimals: a KID of 2e-4 must not print as 0.0002 or 0.0000.
        print(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if args.json:
        checkpoint = paths if len(paths) > 1 else paths[0]
        try:
            record = {"checkpoint": checkpoint, "data": args.data, **{k: json_number(v) for k, v in scores.items()}}
            Path(args.json).write_text(json.dumps(record, indent=2, allow_nan=False))
        except OSError as e:
            raise SystemExit(f"--json {args.json}: {e.strerror}") from None
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("fastgan.evaluate", main))
