"""Training configuration: dataclasses, loaded from YAML, overridden from the command line.

Every option lives in exactly one dataclass field with its default and help text, so
`--help`, the YAML keys and validation cannot drift apart. Bad input (unknown key,
wrong type, impossible value) is rejected before any data or model is built, with a
message naming the key and what would be valid.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

FAMILIES = ("pix2pix", "dcgan", "conditional", "srresnet", "srgan", "gancls", "lapgan")
SUPERRES_FAMILIES = ("srresnet", "srgan")
SCALES = (2, 4, 8)
CONTENT_LOSSES = ("auto", "vgg", "mse")
VGG_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")
SSIM_WINDOW = 11
DATASETS = ("default", "aligned", "paired", "folder", "classes", "fashion_mnist")
PATCH_SIZES = (1, 16, 34, 70, 142, 286)
PENALTIES = ("none", "wgan-gp", "r1")
NORMS = ("batch", "instance", "layer", "none")


def _opt(default, help: str, choices: tuple | None = None, families: tuple = ()):
    """families: the model families that read the option (empty = all); validate refuses a value other than the
    default under any other family, which would silently ignore it (pix2pix's loss.lambda_adv on srgan, say)."""
    return field(default=default, metadata={"help": help, "choices": choices, "families": families})


@dataclass
class DataConfig:
    dataset: str = _opt("default", "where images come from: the embedded edges->photo set (srresnet/srgan: crops "
                                   "of the embedded photos), aligned A|B images, paired A/ B/ folders, an image "
                                   "folder, class folders or Fashion-MNIST (IDX)",
                        DATASETS)
    root: str = _opt("", "dataset folder (train split: ROOT/train if it exists, else ROOT); fashion_mnist: the "
                         "IDX folder (empty = Debian's dataset-fashion-mnist location)")
    val_root: str = _opt("", "validation folder (empty = ROOT/val when it holds images, else no validation; the "
                             "embedded set has its own)")
    direction: str = _opt("AtoB", "aligned/paired data: which half is the input", ("AtoB", "BtoA"))
    load_size: int = _opt(72, "aligned/paired data: resize to this before the random crop (pix2pix: 286); the "
                              "other datasets do not read it")
    crop_size: int = _opt(64, "random crop = training image size (pix2pix: 256; srresnet/srgan: the high-resolution "
                              "crop, taken without resizing, 96 in the paper)")
    flip: bool = _opt(True, "random horizontal flip, identical for input and target (fashion_mnist is flipped "
                            "for lapgan only)")
    edge_low: int = _opt(100, "embedded set: Canny low threshold")
    edge_high: int = _opt(200, "embedded set: Canny high threshold")
    edge_blur: int = _opt(3, "embedded set: Gaussian blur kernel before Canny (0 = none; the talk used 5)")
    edge_invert: bool = _opt(True, "embedded set: black edges on white (as in the talk)")
    num_workers: int = _opt(0, "torch DataLoader worker processes per rank, the training loader's kept for the whole "
                                    "run (0 = load in the training process); with DALI, its threads per rank "
                                    "(0 = CPU cores / processes)")
    loader: str = _opt("auto", "training loader: auto = DALI when it is installed, a GPU is present and the "
                               "dataset is aligned, paired, an image folder or class folders, else the torch "
                               "DataLoader (validation always reads through torch)",
                       ("auto", "dali", "torch"))


@dataclass
class ModelConfig:
    family: str = _opt("pix2pix", "which GAN to train", FAMILIES)
    fused: bool = _opt(True, "fused BatchNorm+activation operators (false = stock nn layers, same weights)")
    norm: str = _opt("batch", "normalization layers of both networks (layer: over C, H, W per sample; lapgan "
                              "level 0's MLPs have none)",
                     NORMS)
    d_norm: str = _opt("same", "the discriminator's normalization when it differs from model.norm (e.g. layer, "
                               "instance or none for a WGAN-GP critic, which should not mix the samples of a "
                               "batch)",
                       ("same", *NORMS))
    ngf: int = _opt(32, "generator base width")
    ndf: int = _opt(32, "discriminator base width")
    num_downs: int = _opt(6, "pix2pix U-Net depth: 8 for 256^2, 7 for 128^2; the input must be divisible by "
                             "2^num_downs", families=("pix2pix",))
    dropout: bool = _opt(True, "pix2pix: dropout in the inner decoder blocks (the paper's noise source)",
                         families=("pix2pix",))
    patch_size: int = _opt(70, "pix2pix: discriminator receptive field (1 = PixelGAN, 286 = ImageGAN)", PATCH_SIZES,
                           families=("pix2pix",))
    nz: int = _opt(100, "dcgan/conditional/gancls/lapgan level 0: latent size",
                   families=("dcgan", "conditional", "gancls", "lapgan"))
    num_classes: int = _opt(10, "conditional, and lapgan with model.class_conditional: number of classes",
                            families=("conditional", "lapgan"))
    channels: int = _opt(3, "dcgan/conditional/gancls/lapgan: image channels (1 for Fashion-MNIST)",
                         families=("dcgan", "conditional", "gancls", "lapgan"))
    scale: int = _opt(4, "srresnet/srgan: upscaling factor (one x2 PixelShuffle stage per factor 2)", SCALES,
                      families=SUPERRES_FAMILIES)
    num_blocks: int = _opt(16, "srresnet/srgan: residual blocks of the SRResNet generator", families=SUPERRES_FAMILIES)
    init_generator: str = _opt("", "srresnet/srgan: start the generator from the G weights of this fastgan "
                                   "srresnet or srgan checkpoint (the paper initializes SRGAN from SRResNet)",
                               families=SUPERRES_FAMILIES)
    caption_len: int = _opt(128, "gancls: captions are cut to this many characters", families=("gancls",))
    text_dim: int = _opt(256, "gancls: caption embedding size of the character encoder (the paper's char-CNN-RNN: "
                              "1024)", families=("gancls",))
    text_embed_dim: int = _opt(128, "gancls: the caption embedding is compressed to this (Linear + LeakyReLU) before "
                                    "it joins z in G and the 4x4 features in D (the paper: 128)", families=("gancls",))
    text_encoder: str = _opt("", "gancls: a pretrained caption encoder file (written by "
                                 "fastgan.text.save_caption_encoder, or a gancls checkpoint), loaded into both "
                                 "networks and frozen; empty = train a character encoder jointly with each network",
                             families=("gancls",))
    gan_int: bool = _opt(False, "gancls: GAN-INT: the generator also learns from interpolated caption embeddings "
                                "of pairs in the batch (a second adversarial term)", families=("gancls",))
    gan_int_beta: float = _opt(0.5, "gancls: GAN-INT interpolation beta * e1 + (1 - beta) * e2 (the paper: 0.5)",
                               families=("gancls",))
    levels: int = _opt(3, "lapgan: Laplacian pyramid levels, each half the side of the next (3 at 32 px: 8, 16, 32)",
                       families=("lapgan",))
    level: int = _opt(0, "lapgan: the level this run trains, 0 = the coarsest (a GAN on the smallest images) up to "
                         "levels - 1 (the full-resolution band); each level is a separate run and checkpoint",
                      families=("lapgan",))
    class_conditional: bool = _opt(False, "lapgan: condition every level on the class label (data.dataset classes "
                                          "or fashion_mnist, model.num_classes classes)", families=("lapgan",))


@dataclass
class LossConfig:
    gan_mode: str = _opt("vanilla", "adversarial loss (wgan: the Wasserstein critic loss, which needs loss.penalty "
                                    "wgan-gp for its Lipschitz constraint)",
                         ("vanilla", "lsgan", "hinge", "wgan"))
    penalty: str = _opt("none", "gradient penalty added to the discriminator's loss: wgan-gp = (||grad D|| - 1)^2 "
                                "between real and fake samples (Gulrajani et al.), r1 = ||grad D||^2 / 2 at real "
                                "samples (Mescheder et al.); costs one more D forward and a double backward per step",
                        PENALTIES)
    penalty_weight: float = _opt(10.0, "weight of loss.penalty (WGAN-GP's lambda, R1's gamma; both papers use 10)")
    penalty_every: int = _opt(1, "apply loss.penalty on every Nth step only, weighted by N (lazy regularization, "
                                 "Karras et al. 2020, who use 16 for R1): saves most of its cost")
    reconstruction: str = _opt("l1", "pix2pix reconstruction norm (l1: the paper; l2: the talk)", ("l1", "l2"),
                               families=("pix2pix",))
    lambda_rec: float = _opt(100.0, "pix2pix weight of the reconstruction term (0 = adversarial only)",
                             families=("pix2pix",))
    lambda_adv: float = _opt(1.0, "pix2pix weight of the adversarial term in the generator loss (0 = reconstruction "
                                  "only)", families=("pix2pix",))
    sr_lambda_adv: float = _opt(1e-3, "srgan weight of the adversarial term added to the content loss (the paper: "
                                      "1e-3)", families=("srgan",))
    content: str = _opt("auto", "srresnet/srgan content loss: vgg = MSE of VGG19 features (needs loss.vgg_weights), "
                                "mse = pixel MSE; auto = vgg for srgan when loss.vgg_weights is set, else mse",
                        CONTENT_LOSSES, families=SUPERRES_FAMILIES)
    vgg_weights: str = _opt("", "local file with torchvision's vgg19 state_dict for the VGG content loss (nothing "
                                "is downloaded)", families=SUPERRES_FAMILIES)
    vgg_layer: str = _opt("relu5_4", "VGG content loss: compare the features after this ReLU (relu5_4 = the "
                                     "paper's VGG54, relu2_2 = VGG22)", VGG_LAYERS, families=SUPERRES_FAMILIES)
    tv_weight: float = _opt(0.0, "srresnet/srgan weight of a total-variation penalty on the output (0 = off)",
                            families=SUPERRES_FAMILIES)
    target_real: float = _opt(1.0, "the discriminator's target for real samples (< 1 = one-sided label smoothing, "
                                   "Salimans et al. 2016); the generator's loss keeps the target 1")


@dataclass
class OptimConfig:
    lr: float = _opt(2e-4, "Adam learning rate of both networks")
    beta1: float = _opt(0.5, "Adam beta1")
    beta2: float = _opt(0.999, "Adam beta2")
    n_critic: int = _opt(1, "discriminator updates per generator update, each on its own batch (WGAN and WGAN-GP: "
                            "5); train.max_steps and the step numbers count batches, i.e. discriminator updates")
    schedule: str = _opt("linear", "linear: constant for epochs, then linear decay to 0 over epochs_decay (pix2pix); "
                                   "step: divide by step_gamma every step_epochs (the talk); constant",
                         ("linear", "step", "constant"))
    epochs: int = _opt(15, "epochs at the full learning rate")
    epochs_decay: int = _opt(15, "linear schedule: further epochs of linear decay")
    step_epochs: int = _opt(50, "step schedule: epochs between learning-rate divisions")
    step_gamma: float = _opt(10.0, "step schedule: divisor")
    ema: float = _opt(0.0, "decay of an exponential moving average of the generator (0 = off; e.g. 0.999)")


@dataclass
class TrainConfig:
    out_dir: str = _opt("runs/default", "checkpoints, samples, metrics.jsonl and TensorBoard logs go here")
    batch_size: int = _opt(8, "global batch size (split evenly over the processes)")
    max_steps: int = _opt(0, "stop after this many optimizer steps (0 = run all epochs)")
    precision: str = _opt("auto", "auto = bf16 on GPUs that have it, fp16 on older GPUs, fp32 on the CPU (where bf16 "
                                  "convolutions are slower without AMX)",
                          ("auto", "bf16", "fp16", "fp32"))
    channels_last: str = _opt("auto", "NHWC memory layout for the convolutions and fused layers; auto = on GPUs, "
                                      "off on the CPU (where it made convolutions ~10% slower in our benchmark)",
                              ("auto", "true", "false"))
    compile: bool = _opt(False, "torch.compile the generator and discriminator")
    cuda_graph: bool = _opt(False, "capture the whole training step in a CUDA graph after 3 eager steps and "
                                   "replay it (one process, bf16 or fp32; docs/training.md, CUDA graphs)")
    sync_bn: bool = _opt(False, "synchronize the BatchNorm statistics of every layer across processes (fastgan's "
                                "synchronized fused BatchNorm, on GPUs and the CPU)")
    seed: int = _opt(0, "seed of everything (each rank adds its rank)")
    deterministic: bool = _opt(False, "torch.use_deterministic_algorithms (slower; exact reruns on GPU)")
    resume: str = _opt("", "'' = fresh run (into out_dir-2, -3 ... if out_dir holds a run), 'auto' = newest valid "
                           "checkpoint in out_dir, or a checkpoint path; data.dataset, data.root, train.batch_size "
                           "and train.seed must match the checkpoint's")
    keep_last: int = _opt(3, "checkpoints kept besides best.pt")
    ckpt_every: int = _opt(0, "steps between extra checkpoints besides the one at each epoch's end (0 = none)")
    log_every: int = _opt(10, "steps between metric lines (JSONL, TensorBoard, progress bar)")
    sample_every: int = _opt(100, "steps between sample grids (input | output | target)")
    val_batches: int = _opt(8, "validation batches per evaluation (0 = no validation)")
    progress: bool = _opt(True, "tqdm progress bar on rank 0")


def discriminator_norm(m: ModelConfig) -> str:
    return m.norm if m.d_norm == "same" else m.d_norm


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A configuration the trainer cannot run; the message names the key."""


def _sections() -> dict[str, type]:
    return {f.name: f.type if isinstance(f.type, type) else globals()[f.type] for f in dataclasses.fields(Config)}


def _field_type(section_cls, name: str) -> type:
    hints = typing.get_type_hints(section_cls)
    return hints[name]


def _unknown(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}")


def _coerce(key: str, value, typ: type):
    """YAML and the command line give strings/ints/bools; accept only lossless conversions."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            # nan passes every `< 0` range check (and inf most `> 0` ones): a weight or decay of nan/inf
            # would train on NaN losses, so no option takes them.
            if not math.isfinite(number):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return number
    elif typ is str:
        if isinstance(value, bool):  # YAML's true/false for the on/off/auto switches
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
    raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")


def _set(cfg: Config, dotted: str, value) -> None:
    sections = _sections()
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in sections:
        raise _unknown(dotted, [f"{s}.{f.name}" for s, c in sections.items() for f in dataclasses.fields(c)])
    section, name = parts
    section_cls = sections[section]
    names = [f.name for f in dataclasses.fields(section_cls)]
    if name not in names:
        raise _unknown(dotted, [f"{section}.{n}" for n in names])
    setattr(getattr(cfg, section), name, _coerce(dotted, value, _field_type(section_cls, name)))


def _flatten(tree: dict, path: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        dotted = f"{path}.{key}" if path else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def load_yaml(cfg: Config, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            tree = yaml.safe_load(f) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, loss, optim, train)")
    # A section whose keys are all commented out reads as None: an empty section, not a key.
    tree = {key: {} if value is None and key in _sections() else value for key, value in tree.items()}
    for dotted, value in _flatten(tree).items():
        try:
            _set(cfg, dotted, value)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


def validate(cfg: Config, world_size: int = 1) -> None:
    """Impossible values, caught before anything expensive happens."""
    d, m, o, t, loss = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.loss
    for dotted, choices in _choices().items():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise ConfigError(f"{dotted}={value!r} is not one of {', '.join(map(str, choices))}")
    defaults = Config()
    for dotted, families in _family_options().items():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        if m.family not in families and value != getattr(getattr(defaults, section), name):
            raise ConfigError(f"{dotted}={value!r} would be ignored: only model.family {' or '.join(families)} reads "
                              f"it, not {m.family}")
    positive = {"data.load_size": d.load_size, "data.crop_size": d.crop_size, "model.ngf": m.ngf,
                "model.ndf": m.ndf, "model.nz": m.nz, "model.num_classes": m.num_classes,
                "model.channels": m.channels, "model.num_downs": m.num_downs, "optim.lr": o.lr,
                "train.batch_size": t.batch_size, "train.log_every": t.log_every,
                "train.sample_every": t.sample_every, "train.keep_last": t.keep_last,
                "optim.step_epochs": o.step_epochs, "model.num_blocks": m.num_blocks,
                "loss.penalty_every": loss.penalty_every, "optim.n_critic": o.n_critic}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    non_negative = {"data.num_workers": d.num_workers, "train.max_steps": t.max_steps,
                    "train.ckpt_every": t.ckpt_every, "train.val_batches": t.val_batches,
                    "optim.epochs": o.epochs, "optim.epochs_decay": o.epochs_decay, "optim.ema": o.ema,
                    "loss.lambda_rec": loss.lambda_rec, "loss.lambda_adv": loss.lambda_adv,
                    "data.edge_blur": d.edge_blur, "loss.sr_lambda_adv": loss.sr_lambda_adv,
                    "loss.tv_weight": loss.tv_weight}
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if not 0 <= t.seed <= 2**32 - world_size:  # each process seeds NumPy with seed + rank, which takes 32 bits
        raise ConfigError(f"train.seed must be in [0, {2**32 - world_size}] with {world_size} process(es), "
                          f"got {t.seed}")
    if o.schedule != "linear" and o.epochs == 0:
        raise ConfigError(f"optim.epochs must be > 0 for optim.schedule={o.schedule} (optim.epochs_decay only adds "
                          f"epochs to the linear schedule)")
    if o.epochs + o.epochs_decay == 0:
        raise ConfigError("optim.epochs + optim.epochs_decay must be > 0")
    if not 0 <= o.beta1 < 1 or not 0 <= o.beta2 < 1:
        raise ConfigError(f"optim.beta1 and optim.beta2 must be in [0, 1), got {o.beta1}, {o.beta2}")
    if o.ema >= 1:
        raise ConfigError(f"optim.ema is a decay in [0, 1), got {o.ema}")
    if o.step_gamma <= 1 and o.schedule == "step":
        raise ConfigError(f"optim.step_gamma divides the learning rate and must be > 1, got {o.step_gamma}")
    if d.crop_size > d.load_size and d.dataset in ("aligned", "paired") and m.family not in SUPERRES_FAMILIES:
        raise ConfigError(f"data.crop_size ({d.crop_size}) cannot be larger than data.load_size ({d.load_size})")
    if d.edge_blur and d.edge_blur % 2 == 0:
        raise ConfigError(f"data.edge_blur must be odd (a Gaussian kernel size), got {d.edge_blur}")
    if t.batch_size % world_size:
        raise ConfigError(f"train.batch_size ({t.batch_size}) must be divisible by the number of processes "
                          f"({world_size}): each process takes an equal share")
    if not 0 < loss.target_real <= 1:
        raise ConfigError(f"loss.target_real must be in (0, 1], got {loss.target_real}")
    if loss.target_real != 1 and loss.gan_mode in ("hinge", "wgan"):
        raise ConfigError(f"loss.target_real ({loss.target_real}) smooths the vanilla and lsgan losses only; "
                          f"loss.gan_mode={loss.gan_mode} has fixed margins: leave target_real at 1")
    untrained = discriminator_untrained(cfg)
    if loss.penalty != "none":
        if not loss.penalty_weight > 0:
            raise ConfigError(f"loss.penalty_weight must be > 0 with loss.penalty {loss.penalty}, got "
                              f"{loss.penalty_weight} (loss.penalty none switches it off)")
        if untrained:
            raise ConfigError(f"loss.penalty {loss.penalty} regularizes the discriminator, but {untrained}")
    elif loss.penalty_every != 1:
        raise ConfigError(f"loss.penalty_every ({loss.penalty_every}) spaces out a gradient penalty, but loss.penalty "
                          f"is none")
    if o.n_critic > 1 and untrained:
        raise ConfigError(f"optim.n_critic ({o.n_critic}) spaces out the generator's updates between discriminator "
                          f"updates, but {untrained}")
    if t.cuda_graph:
        fixed = "train.cuda_graph replays one captured step"
        if loss.penalty != "none":
            raise ConfigError(f"{fixed}; loss.penalty {loss.penalty} is not supported with it yet")
        if o.n_critic > 1:
            raise ConfigError(f"{fixed}, but optim.n_critic {o.n_critic} alternates two kinds of step")
        if t.compile:
            raise ConfigError("train.cuda_graph and train.compile both take over the step's kernel launches; "
                              "choose one")
        if world_size > 1:
            raise ConfigError(f"{fixed} in one process; under torchrun ({world_size} processes) DDP's gradient "
                              f"all-reduce is not captured: drop --train.cuda_graph")
        if m.family == "gancls":
            raise ConfigError(f"{fixed}, but gancls picks its mismatched caption pairs with a mask whose size "
                              f"depends on the batch (read on the host): drop --train.cuda_graph")
    if m.d_norm != "same" and (m.family == "srresnet" or (m.family == "lapgan" and m.level == 0)):
        which = "srresnet trains no discriminator" if m.family == "srresnet" else "lapgan level 0's MLPs have no norm"
        raise ConfigError(f"model.d_norm={m.d_norm} would be ignored: {which}")
    if m.family == "pix2pix":
        if d.crop_size % (2 ** m.num_downs):
            raise ConfigError(f"data.crop_size ({d.crop_size}) must be divisible by 2^model.num_downs "
                              f"({2 ** m.num_downs}) for the U-Net; use num_downs 8 for 256, 7 for 128, 6 for 64")
        if d.crop_size < patch_min_crop(m.patch_size):
            fitting = [str(p) for p in PATCH_SIZES if patch_min_crop(p) <= d.crop_size]
            raise ConfigError(f"model.patch_size {m.patch_size} needs data.crop_size >= {patch_min_crop(m.patch_size)} "
                              f"(its discriminator halves the image {PATCH_SIZES.index(m.patch_size)} times), got "
                              f"{d.crop_size}: use model.patch_size {' or '.join(fitting)}")
        if loss.lambda_rec == 0 and loss.lambda_adv == 0:
            raise ConfigError("loss.lambda_rec and loss.lambda_adv are both 0: the generator would learn nothing")
    elif m.family in SUPERRES_FAMILIES:
        _validate_superres(cfg)
    elif m.family == "gancls":
        _validate_gancls(cfg, world_size)
    elif m.family == "lapgan":
        _validate_lapgan(cfg)
    else:
        if d.crop_size not in (32, 64, 128):
            raise ConfigError(f"data.crop_size ({d.crop_size}) must be 32, 64 or 128 for model.family="
                              f"{m.family} (the DCGAN layouts)")
        if d.dataset in ("aligned", "paired", "default"):
            raise ConfigError(f"data.dataset={d.dataset!r} holds image pairs; model.family={m.family} needs "
                              f"'folder', 'classes' or 'fashion_mnist'")
        if m.family == "conditional" and d.dataset == "folder":
            raise ConfigError("model.family=conditional needs labels: data.dataset 'classes' or 'fashion_mnist'")
    if m.family == "pix2pix" and d.dataset not in ("default", "aligned", "paired"):
        raise ConfigError(f"model.family=pix2pix needs image pairs: data.dataset 'default', 'aligned' or "
                          f"'paired', got {d.dataset!r}")
    if d.dataset not in ("default", "fashion_mnist") and not d.root:
        raise ConfigError(f"data.dataset={d.dataset!r} needs data.root (a folder)")


def discriminator_untrained(cfg: Config) -> str:
    """Why the run trains no discriminator ('' when it does)."""
    m, loss = cfg.model, cfg.loss
    if m.family == "srresnet":
        return "model.family=srresnet trains no discriminator"
    if m.family == "srgan" and loss.sr_lambda_adv == 0:
        return "loss.sr_lambda_adv is 0, so the discriminator is not trained"
    if m.family == "pix2pix" and loss.lambda_adv == 0:
        return "loss.lambda_adv is 0, so the discriminator is not trained"
    return ""


def patch_min_crop(patch_size: int) -> int:
    """The smallest image the PatchGAN of this receptive field takes: its n 4x4 stride-2 convolutions
    halve the side n times, then two 4x4 stride-1 convolutions need 3 pixels left for one logit."""
    halvings = PATCH_SIZES.index(patch_size)
    return 3 * 2 ** halvings if halvings else 1


def _validate_superres(cfg: Config) -> None:
    d, m, loss = cfg.data, cfg.model, cfg.loss
    if d.dataset not in ("default", "folder"):
        raise ConfigError(f"model.family={m.family} trains on photos: data.dataset 'default' (the embedded photos) "
                          f"or 'folder', got {d.dataset!r}")
    if d.crop_size % m.scale:
        raise ConfigError(f"data.crop_size ({d.crop_size}) must be a multiple of model.scale ({m.scale}): the "
                          f"low-resolution input is crop_size / scale pixels wide")
    if d.crop_size - 2 * m.scale < SSIM_WINDOW:
        raise ConfigError(f"data.crop_size ({d.crop_size}) is too small: validation crops a border of model.scale "
                          f"({m.scale}) and SSIM needs {SSIM_WINDOW} pixels left; use at least "
                          f"{SSIM_WINDOW + 2 * m.scale}")
    if loss.content == "vgg" and not loss.vgg_weights:
        raise ConfigError("loss.content=vgg needs loss.vgg_weights: a local file with torchvision's vgg19 "
                          "state_dict (nothing is downloaded); or use loss.content mse")
    for key, path in (("loss.vgg_weights", loss.vgg_weights), ("model.init_generator", m.init_generator)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{key}: file not found: {path}")


def _validate_gancls(cfg: Config, world_size: int) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    if t.batch_size // world_size < 2:
        raise ConfigError(f"model.family=gancls pairs each image with another sample's caption within a "
                          f"process's batch, so it needs 2 or more samples per process; train.batch_size "
                          f"{t.batch_size} over {world_size} process(es) gives {t.batch_size // world_size}")
    if d.dataset not in ("default", "folder", "fashion_mnist"):
        raise ConfigError(f"model.family=gancls needs captioned images: data.dataset 'default' (the embedded "
                          f"photos), 'folder' (images with same-named .txt captions) or 'fashion_mnist', "
                          f"got {d.dataset!r}")
    if d.crop_size not in (32, 64, 128):
        raise ConfigError(f"data.crop_size ({d.crop_size}) must be 32, 64 or 128 for model.family=gancls "
                          f"(the DCGAN layouts)")
    channels = {"default": 3, "fashion_mnist": 1}.get(d.dataset)
    if channels is not None and m.channels != channels:
        raise ConfigError(f"data.dataset={d.dataset!r} has {channels}-channel images; set model.channels "
                          f"{channels} (got {m.channels})")
    for key, value in (("model.caption_len", m.caption_len), ("model.text_dim", m.text_dim),
                       ("model.text_embed_dim", m.text_embed_dim)):
        if not value > 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    if not 0 <= m.gan_int_beta <= 1:
        raise ConfigError(f"model.gan_int_beta must be in [0, 1], got {m.gan_int_beta}")
    if m.text_encoder and not Path(m.text_encoder).is_file():
        raise ConfigError(f"model.text_encoder: file not found: {m.text_encoder}")


def _validate_lapgan(cfg: Config) -> None:
    d, m = cfg.data, cfg.model
    if d.dataset not in ("default", "folder", "classes", "fashion_mnist"):
        raise ConfigError(f"model.family=lapgan needs single images: data.dataset 'default' (crops of the embedded "
                          f"photos), 'folder', 'classes' or 'fashion_mnist', got {d.dataset!r}")
    if m.levels < 1:
        raise ConfigError(f"model.levels must be >= 1, got {m.levels}")
    if not 0 <= m.level < m.levels:
        raise ConfigError(f"model.level ({m.level}) must be in [0, {m.levels}): level 0 is the coarsest and "
                          f"model.levels - 1 the full resolution")
    factor = 2 ** (m.levels - 1)
    if d.crop_size % factor or d.crop_size // factor < 4:
        raise ConfigError(f"data.crop_size ({d.crop_size}) must be divisible by 2^(model.levels - 1) = {factor} "
                          f"with a coarsest level of at least 4 px (at least {4 * factor})")
    if m.level > 0 and (d.crop_size // factor * 2 ** m.level) % 4:
        raise ConfigError(f"data.crop_size ({d.crop_size}) gives level {m.level} a side that is not a multiple of 4, "
                          f"which its discriminator's two stride-2 convolutions need")
    channels = {"default": 3, "fashion_mnist": 1}.get(d.dataset)
    if channels is not None and m.channels != channels:
        raise ConfigError(f"data.dataset={d.dataset!r} has {channels}-channel images; set model.channels "
                          f"{channels} (got {m.channels})")
    if m.class_conditional and d.dataset not in ("classes", "fashion_mnist"):
        raise ConfigError(f"model.class_conditional needs labels: data.dataset 'classes' or 'fashion_mnist', "
                          f"got {d.dataset!r}")


def _family_options() -> dict[str, tuple]:
    return {f"{s}.{f.name}": f.metadata["families"] for s, c in _sections().items()
            for f in dataclasses.fields(c) if f.metadata.get("families")}


def _choices() -> dict[str, tuple]:
    return {f"{s}.{f.name}": f.metadata["choices"] for s, c in _sections().items()
            for f in dataclasses.fields(c) if f.metadata.get("choices")}


def build_parser(prog: str = "fastgan.train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}",
        usage=f"python -m {prog} [--config YAML] [--SECTION.KEY VALUE ...]",
        description="Train a GAN. Options come from the defaults below, then --config YAML, then the "
                    "command line (--section.key value). Launch with torchrun for several processes: "
                    "torchrun --nproc_per_node=N -m fastgan.train --config configs/pix2pix_edges.yaml "
                    "--train.batch_size 8 (train.batch_size is the global batch: N must divide it)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with sections data, model, loss, optim, train")
    defaults = Config()
    for section, cls in _sections().items():
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            typ = _field_type(cls, f.name)
            choices = f.metadata.get("choices")
            meta = "{" + ",".join(map(str, choices)) + "}" if choices else ("BOOL" if typ is bool else typ.__name__.upper())
            text = f"{f.metadata['help']} (default: {getattr(getattr(defaults, section), f.name)!r})"
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
                               metavar=meta, help=text.replace("%", "%%"))  # argparse %-formats help strings
    return parser


def parse_config(argv: list[str] | None = None, world_size: int = 1) -> Config:
    """Defaults <- YAML <- command line, then validation; errors exit with the argparse usage line."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("--")]
        valid = sorted(a.dest for a in parser._actions if "." in a.dest)
        parser.error(str(_unknown(flags[0][2:] if flags else unknown[0], valid)))
    cfg = Config()
    try:
        if args.config:
            load_yaml(cfg, args.config)
        for dotted, value in vars(args).items():
            if dotted != "config":
                _set(cfg, dotted, value)
        validate(cfg, world_size)
    except ConfigError as e:
        parser.error(str(e))
    return cfg


def config_changes(before: dict, after: dict) -> dict[str, tuple]:
    """{dotted key: (before, after)} for every option two config dicts (Config.to_dict) set differently."""
    old, new = _flatten(before), _flatten(after)
    return {key: (old.get(key), value) for key, value in new.items() if old.get(key) != value}


def config_from_dict(tree: dict) -> Config:
    """Rebuilds a Config stored in a checkpoint (validated like a YAML file)."""
    cfg = Config()
    for dotted, value in _flatten(tree).items():
        _set(cfg, dotted, value)
    return cfg


__all__ = ["Config", "ConfigError", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig", "TrainConfig",
           "parse_config", "load_yaml", "validate", "build_parser", "config_from_dict", "config_changes"]
