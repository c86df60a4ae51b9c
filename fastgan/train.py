"""The trainer: config -> data -> models -> loop -> checkpoints and logs.

    python -m fastgan.train                                   # pix2pix on the embedded data
    python -m fastgan.train --config configs/dcgan_fashion_mnist.yaml --train.batch_size 64
    torchrun --nproc_per_node=8 -m fastgan.train --config configs/pix2pix_edges.yaml --train.batch_size 8

One step, read top to bottom in `train_step`: generate fakes, score and update the
discriminator, score and update the generator, update the EMA. `main` sets up the
rest and runs the loop; nothing here is family-specific (see fastgan/families).
"""
from __future__ import annotations

import inspect
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from . import checkpoint as ckpt_io
from .config import SUPERRES_FAMILIES, Config, ConfigError, config_changes, parse_config
from .cuda_graph import WARMUP_STEPS, GraphedStep
from .data.collate import collate_skipping
from .data.dali import DALILoader, choose_loader
from .data.epochs import EpochTaggedDataset, EpochTaggedSampler
from .data.files import is_image_file
from .data.sampler import ShardedSampler
from .ema import EMA
from .families import Family, build_family
from .models import batch_normalized, with_defaults
from .nn import convert_sync_batchnorm
from .outputs import existing_ancestor, write_problem
from .visualize import grid, save_image


# ----------------------------------------------------------------------------- setup

def init_distributed() -> tuple[int, int, int, torch.device]:
    """(rank, world_size, local_rank, device); a process group only under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, local_rank, device


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SystemExit(f"train.precision=bf16 is not supported on {torch.cuda.get_device_name(device)}; "
                             f"use fp16 or fp32")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"  # CPU bf16 convolutions are slower than fp32 without AMX; ask for bf16 explicitly


def build_datasets(cfg: Config):
    """(train, validation or None) datasets for the configured source."""
    from . import data as D
    d, seed = cfg.data, cfg.train.seed
    if cfg.model.family in SUPERRES_FAMILIES:
        return build_superres_datasets(cfg)
    if cfg.model.family == "gancls":
        return D.build_caption_datasets(cfg)
    if cfg.model.family == "lapgan":
        from .data.lapgan import build_lapgan_datasets
        return build_lapgan_datasets(cfg)
    if d.dataset == "default":
        edge = dict(low=d.edge_low, high=d.edge_high, blur=d.edge_blur, invert=d.edge_invert)
        return (D.DefaultEdges2Photo("train", image_size=d.crop_size, seed=seed, flip=d.flip, **edge),
                D.DefaultEdges2Photo("val", image_size=d.crop_size, seed=seed, **edge))
    train_root, val_root = split_roots(cfg)
    if d.dataset in ("aligned", "paired"):
        cls = D.AlignedDataset if d.dataset == "aligned" else D.PairedFolderDataset
        common = dict(direction=d.direction, load_size=d.load_size, crop_size=d.crop_size, seed=seed)
        train = cls(train_root, flip=d.flip, train=True, **common)
        return train, (cls(val_root, flip=False, train=False, **common) if val_root else None)
    if d.dataset == "fashion_mnist":
        kwargs = dict(root=d.root) if d.root else {}
        # 28x28 items: padded to 32 as in the DCGAN examples, resized for larger crops.
        fit = "pad" if d.crop_size <= 32 else "resize"
        return D.fashion_mnist(split="train", image_size=d.crop_size, fit=fit, **kwargs), None
    cls = D.ImageFolderDataset if d.dataset == "folder" else D.ClassFolderDataset
    return cls(train_root, image_size=d.crop_size, channels=cfg.model.channels, flip=d.flip, seed=seed), None


def check_class_count(dataset, cfg: Config) -> None:
    """Fails at start-up when the data's labels do not fit model.num_classes. The models check
    label values on CPU tensors only (on a GPU it would cost a host sync per forward), so this
    one check up front is what keeps a mismatch from surfacing as a device-side assert."""
    uses_labels = cfg.model.family == "conditional" or (cfg.model.family == "lapgan" and cfg.model.class_conditional)
    if not uses_labels:
        return
    base = getattr(dataset, "base", dataset)  # a LAPGAN level wraps its image dataset
    labels, classes = getattr(base, "labels", None), getattr(base, "classes", None)
    if labels is not None and len(labels):
        low, count = int(labels.min()), int(labels.max()) + 1
    elif classes:
        low, count = 0, len(classes)
    else:
        return
    if low < 0:
        raise ConfigError(f"the training data holds negative labels (down to {low}); labels must be in "
                          f"[0, model.num_classes)")
    if count > cfg.model.num_classes:
        raise ConfigError(f"the training data's labels run from {low} to {count - 1}, but model.num_classes is "
                          f"{cfg.model.num_classes}: pass --model.num_classes {count}")


def split_roots(cfg: Config) -> tuple[Path, Path | None]:
    """ROOT/train (or ROOT) and the validation folder: data.val_root, else ROOT/val when it holds images.
    An empty ROOT/val (`fastgan.prepare edges --split 1 0 0` writes one) means no validation, not an error."""
    d = cfg.data
    root = Path(d.root)
    train_root = root / "train" if (root / "train").is_dir() else root
    if d.val_root:
        return train_root, Path(d.val_root)
    return train_root, root / "val" if holds_images(root / "val") else None


def holds_images(folder: Path) -> bool:
    """Whether `folder` holds images where the datasets look: directly inside it, or in A/ for a paired set."""
    return any(is_image_file(p) for d in (folder, folder / "A") if d.is_dir() for p in d.iterdir())


def reads_splits(cfg: Config) -> bool:
    """Whether the data is a folder with ROOT/train and ROOT/val splits (pix2pix pairs, super-resolution photos)."""
    return cfg.data.dataset in ("aligned", "paired") or (cfg.model.family in SUPERRES_FAMILIES
                                                         and cfg.data.dataset == "folder")


def build_superres_datasets(cfg: Config):
    """High-resolution crops and their bicubic downscales, from the embedded photos or a photo folder."""
    from . import data as D
    d = cfg.data
    common = dict(crop_size=d.crop_size, scale=cfg.model.scale, seed=cfg.train.seed)
    if d.dataset == "default":
        return D.DefaultSuperResolution("train", flip=d.flip, **common), D.DefaultSuperResolution("val", **common)
    train_root, val_root = split_roots(cfg)
    return (D.SuperResolutionFolder(train_root, flip=d.flip, **common),
            D.SuperResolutionFolder(val_root, train=False, **common) if val_root else None)


def make_loader(dataset, sampler: ShardedSampler, cfg: Config, device: torch.device, channels_last: bool,
                world_size: int, requested: str = "torch", persistent: bool = False) -> tuple[object, str, str]:
    """(loader, "dali" | "torch", why) over one rank's sampler; both yield the same batch dicts.
    persistent=True keeps the torch loader's workers for the whole run (the training loader);
    a loader read now and then (validation) lets them go between passes."""
    name, why = choose_loader(requested, dataset, device)
    if name == "dali":
        threads = cfg.data.num_workers or max(1, (os.cpu_count() or 2) // world_size)
        return DALILoader(dataset, sampler, sampler.batch_size, device, channels_last=channels_last,
                          num_threads=threads), name, why
    # Persistent workers never see dataset.set_epoch, so each index carries its epoch to them.
    workers = cfg.data.num_workers
    loader = DataLoader(EpochTaggedDataset(dataset), batch_size=sampler.batch_size,
                        sampler=EpochTaggedSampler(sampler), num_workers=workers,
                        persistent_workers=persistent and workers > 0,
                        collate_fn=collate_skipping, pin_memory=torch.cuda.is_available(),
                        worker_init_fn=leave_stop_signals_to_the_trainer,
                        generator=torch.Generator())  # keeps the loader off the global RNG
    return loader, name, why


def no_forward_buffer_sync() -> dict:
    """DDP's option that keeps it from broadcasting D's buffers before each of its several forwards a step.
    torch 2.13 names it forward_sync_buffers (it deprecates broadcast_buffers with a warning every run);
    its one sync at start-up changes nothing, as every rank builds D from the same seed."""
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def reseed_for_step(seed: int, rank: int, step: int) -> None:
    """Seeds every random stream from (seed, rank, step), for a resume that cannot restore the saved
    streams: seed + rank again would replay the dropout masks and noise of the run's first steps."""
    fresh = int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
    random.seed(fresh)
    np.random.seed(fresh)
    torch.manual_seed(fresh)


def lr_factor(cfg: Config, epoch: int) -> float:
    o = cfg.optim
    if o.schedule == "linear":  # never below 0, even in an epoch past the schedule
        return max(0.0, 1.0 - max(0, epoch + 1 - o.epochs) / (o.epochs_decay + 1))
    if o.schedule == "step":
        return o.step_gamma ** -(epoch // o.step_epochs)
    return 1.0


def total_epochs(cfg: Config) -> int:
    return cfg.optim.epochs + (cfg.optim.epochs_decay if cfg.optim.schedule == "linear" else 0)


def make_optimizer(params, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """Adam; torch's fused kernel where it exists, apex FusedAdam only if already installed."""
    kwargs = dict(lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    if cfg.train.cuda_graph:  # a step inside a CUDA graph: torch's fused Adam, its state on the device
        return torch.optim.Adam(params, fused=True, capturable=True, **kwargs)
    if device.type == "cuda":
        try:
            from apex.optimizers import FusedAdam
            return FusedAdam(params, adam_w_mode=False, **kwargs)
        except ImportError:
            pass
    return torch.optim.Adam(params, fused=True, **kwargs)


def next_free_dir(out: Path) -> Path:
    """out-2, out-3, ...: a fresh run never writes into an earlier run's folder."""
    n = 2
    while (candidate := out.with_name(f"{out.name}-{n}")).exists():
        n += 1
    return candidate


class StopRequest:
    """SIGTERM/SIGINT ask for a clean stop after the current step; a second SIGINT aborts.
    restore() gives the signals back to the handlers they had (main() returns to its caller)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A DataLoader worker ignores SIGINT and SIGTERM: Ctrl-C reaches the whole process group, and a
    worker that died of it would crash the trainer's clean stop. Forked workers inherit StopRequest's
    handlers; forkserver (Python 3.14's default on Linux) and spawn workers would not. The trainer
    still ends its workers, and a worker whose trainer is gone exits by itself (torch's watchdog)."""
    for signum in StopRequest.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if value.dim() == 4 and channels_last:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def split_batch(batch: dict, size: int) -> list[dict]:
    """A batch in pieces of `size` samples. Rank 0 validates alone: it reads the global batches one
    process reads (so scores and best.pt do not depend on the process count) and runs them through
    the model in pieces no larger than a training batch on its device."""
    tensors = [v for v in batch.values() if isinstance(v, torch.Tensor)]
    if not tensors:
        return [batch]
    return [{k: v[i:i + size] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}
            for i in range(0, len(tensors[0]), size)]


class NonFinite(RuntimeError):
    """A non-finite loss or weight: the state after it may be corrupt, so it is never checkpointed.
    `step` is the step whose loss was bad (None for weights: the step at which they were found)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


PROGRESS_FILE_INTERVAL_S = 30


class OutputWriteError(RuntimeError):
    """An output of the run could not be written (disk full, quota, a folder gone read-only). What was
    written before stays whole (checkpoints are written atomically), so the run stops and says where to
    continue from rather than train on with nothing saved."""


@contextmanager
def writing(what: str):
    try:
        yield
    except OSError as error:
        raise OutputWriteError(f"cannot write {what}: {error.strerror or error}") from error


class NoTrainingData(RuntimeError):
    """An epoch went by without one step: every sample was skipped, and every later epoch would be the same."""


def nonfinite_role(tensors: dict[str, Iterable[torch.Tensor]]) -> str | None:
    """The first role whose floating-point tensors hold an inf or nan (one host sync per role)."""
    for role, values in tensors.items():
        flags = [torch.isfinite(v.detach()).all() for v in values if v.is_floating_point()]
        if flags and not torch.stack(flags).all():
            return role
    return None


def logged_by_step(line: str, step: int) -> bool:
    """Whether a metrics.jsonl line belongs to the run up to `step`; a line torn by a crash does not."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and record.get("step", 0) <= step


def set_aside_history_after(out: Path, aside: Path, step: int) -> None:
    """Moves what the abandoned timeline logged after `step` beside its checkpoints in `aside`: its
    metrics.jsonl and config_changes.jsonl lines and its sample grids. Left in place, the lines
    would be dropped when metrics.jsonl is trimmed to the resumed step (metrics) or read as this
    run's (config changes), and its grids would mix with this run's. A change line at `step` itself
    goes too: it was recorded by a resume of that step, whose options applied after it."""
    for name, last in (("metrics.jsonl", step), ("config_changes.jsonl", step - 1)):
        log = out / name
        if not log.is_file():
            continue
        lines = log.read_text().splitlines()
        later = [line for line in lines if line.strip() and not logged_by_step(line, last)]
        if later:
            (aside / name).write_text("".join(line + "\n" for line in later))
            kept = "".join(line + "\n" for line in lines if logged_by_step(line, last))
            ckpt_io.write_bytes_atomic(kept.encode(), log)
    for picture in sorted((out / "samples").glob("step_*.png")):
        number = picture.stem[len("step_"):]
        if number.isdigit() and int(number) > step:
            (aside / "samples").mkdir(exist_ok=True)
            picture.rename(aside / "samples" / picture.name)


def newest_good_checkpoint(folder: Path, resumed_from: Path | None) -> Path | None:
    """The newest step checkpoint in `folder` that loads and holds finite weights, else the one this run
    resumed from (it may lie elsewhere)."""
    for path in ckpt_io.list_checkpoints(folder):
        try:
            models = ckpt_io.load(path)["models"]
        except (OSError, ValueError):  # torn or foreign, as load_latest skips it
            continue
        if nonfinite_role({role: sd.values() for role, sd in models.items()}) is None:
            return path
    return resumed_from


# The options that decide which samples a saved (epoch, batch) position points at, so a resume must
# keep them. The process count may change: train.batch_size is the global batch, and a step's
# samples do not depend on how it is split over processes.
DATA_POSITION_KEYS = ("data.dataset", "data.root", "train.batch_size", "train.seed")


def same_networks(state: dict, family: Family) -> bool:
    """Whether a checkpoint holds this family's networks with these constructor arguments."""
    saved = state["model_args"]
    return (state["family"] == family.name and saved.keys() == family.model_args.keys()
            and all(with_defaults(family.name, role, saved[role]) == with_defaults(family.name, role, args)
                    for role, args in family.model_args.items()))


def data_position_changes(changes: dict[str, tuple], saved_samples: int, train_samples: int) -> list[str]:
    """'key: checkpoint X, now Y' for each change (config_changes against the checkpoint's config, and
    the training set's size) that would make a resume replay or skip samples."""
    moved = [f"{key}: checkpoint {old!r}, now {new!r}" for key, (old, new) in changes.items()
             if key in DATA_POSITION_KEYS and old is not None
             and not (key == "data.root" and os.path.realpath(old) == os.path.realpath(new))]
    if saved_samples != train_samples:
        moved.append(f"training samples: checkpoint {saved_samples}, now {train_samples}")
    return moved


# ----------------------------------------------------------------------------- one step

def train_step(family: Family, nets: dict, optimizers: dict, scalers: dict, autocast, batch: dict,
               ema, step: int, watch: LossWatch) -> dict[str, torch.Tensor]:
    """Step `step` (0-based): one update of D (when adversarial), and of G on every optim.n_critic-th
    step; returns the logged losses."""
    G, D, D_plain = nets["G"], nets["D"], nets["D_plain"]
    update_g = (step + 1) % family.cfg.optim.n_critic == 0
    with autocast(), torch.set_grad_enabled(update_g):  # fakes for D alone need no graph through G
        fake = family.generate(G, batch)
    logs = {}
    if family.adversarial:
        D_plain.requires_grad_(True)
        with autocast():
            loss_d, logs_d = family.d_loss(D, batch, fake.detach())
        logs.update(logs_d)
        if family.cfg.loss.penalty != "none" and step % family.cfg.loss.penalty_every == 0:
            # On the bare module: torch.compile has no double backward, and DDP still averages
            # the gradients, as their one accumulation per parameter fires its hooks once.
            penalty, logs_p = family.penalty(nets["D_eager"], batch, fake.detach(), autocast,
                                             scalers["D"].get_scale())  # 1.0 unless fp16
            loss_d = loss_d + penalty
            logs.update(logs_p)
        optimizer_step(loss_d, "discriminator", optimizers["D"], scalers["D"], watch, step)
        D_plain.requires_grad_(False)  # the G step needs gradients through D, not for D
    if not update_g:
        return logs
    with autocast():
        loss_g, logs_g = family.g_loss(D_plain, batch, fake)
    logs.update(logs_g)
    optimizer_step(loss_g, "generator", optimizers["G"], scalers["G"], watch, step)
    if ema is not None:
        ema.update_parameters(family.models["G"])
    return logs


def graphed_train_step(family: Family, nets: dict, optimizers: dict, scalers: dict, autocast,
                       watch: LossWatch) -> GraphedStep:
    """train_step captured in a CUDA graph; called as (batch, step). The EMA is left out of the graph:
    the caller updates it after each replay."""
    return GraphedStep(lambda b, s, w: train_step(family, nets, optimizers, scalers, autocast, b, None, s, w), watch)


class LossWatch:
    """Finds a non-finite loss without stalling the GPU. Reading a loss on the host waits for the
    device to finish it, and a check before every backward left the GPU idle while the host queued
    the rest of the step (benchmarks/README.md, "Host overhead"). Each loss leaves a device flag
    instead; the flags are read together, with one all-reduce under torchrun so every process
    reaches the same verdict, every `every` losses and before each checkpoint. So a run may go a
    few steps past a bad loss; their state is never saved."""

    def __init__(self, every: int):
        self.every = every
        self.pending: list[tuple[torch.Tensor, str, int]] = []

    def add(self, loss: torch.Tensor, which: str, step: int) -> None:
        self.pending.append((loss.detach().float().reshape(1), which, step))
        if len(self.pending) >= self.every:
            self.check()

    def check(self) -> None:
        """Raises NonFinite naming the first bad loss (on any process) since the last check."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        losses = torch.cat([loss for loss, _, _ in pending])
        finite = torch.isfinite(losses).to(torch.float32)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if bool(finite.all()):
            return
        first = int(torch.nonzero(finite == 0)[0])
        _, which, step = pending[first]
        value = float(losses[first])
        detail = f"{value}" if not math.isfinite(value) else "not finite on another process"
        raise NonFinite(f"non-finite loss: the {which} loss is {detail}", step)


def optimizer_step(loss: torch.Tensor, which: str, optimizer, scaler, watch: LossWatch, step: int) -> None:
    """Backward and one update. A non-finite loss: fp16 lets the GradScaler skip the step; with
    bf16/fp32 the watch stops the run rather than train on garbage."""
    if not scaler.is_enabled():
        watch.add(loss, which, step)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


# ----------------------------------------------------------------------------- main

def usage_error(message: str) -> int:
    """A problem the user must fix, reported as the config parser reports its own: one line, status 2."""
    sys.stderr.write(f"fastgan.train: error: {message}\n")  # one write: torchrun's processes share the stream
    sys.stderr.flush()
    return 2


def main(argv: list[str] | None = None) -> int:
    rank, world_size, local_rank, device = init_distributed()
    # The host's own flags (every step's "have data, stop?", the skipped counts) go over gloo as CPU
    # tensors: over NCCL they would be GPU tensors read back, a device sync per step.
    control = dist.new_group(backend="gloo") if world_size > 1 else None
    cfg = parse_config(argv, world_size)
    is_main = rank == 0
    t = cfg.train
    out = Path(t.out_dir)
    if out.exists() and not out.is_dir():
        return usage_error(f"train.out_dir {out} exists and is not a folder")
    where = existing_ancestor(out)
    problem = write_problem(where)
    if problem:  # else the first checkpoint or log line would fail, after the data and models are built
        return usage_error(f"train.out_dir {out}: cannot write into {where}: {problem}")
    precision = resolve_precision(t.precision, device)
    if t.cuda_graph and device.type != "cuda":
        return usage_error("train.cuda_graph needs a GPU: CUDA graphs capture CUDA kernels")
    if t.cuda_graph and precision == "fp16":
        return usage_error("train.cuda_graph needs train.precision bf16 or fp32: fp16's GradScaler reads its "
                           "overflow check on the host, which a captured step cannot do")
    channels_last = t.channels_last == "true" or (t.channels_last == "auto" and device.type == "cuda")

    random.seed(t.seed + rank)
    np.random.seed(t.seed + rank)
    torch.manual_seed(t.seed + rank)
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # -- data
    try:  # missing or empty folders, unpaired files, labels or a batch the data cannot fill (ConfigError)
        train_set, val_set = build_datasets(cfg)
        check_class_count(train_set, cfg)
        if len(train_set) < t.batch_size:
            raise ConfigError(f"train.batch_size ({t.batch_size}) is larger than the training set "
                              f"({len(train_set)} samples in {cfg.data.root or cfg.data.dataset})")
    except (OSError, ValueError) as e:
        return usage_error(str(e))
    if is_main and val_set is None and t.val_batches and reads_splits(cfg):
        print(f"fastgan: no validation (and no best.pt): {Path(cfg.data.root) / 'val'} is missing or holds no "
              f"images", flush=True)
    per_rank = t.batch_size // world_size
    sampler = ShardedSampler(len(train_set), per_rank, rank, world_size, shuffle=True, seed=t.seed)
    loader, loader_name, loader_reason = make_loader(train_set, sampler, cfg, device, channels_last, world_size,
                                                     cfg.data.loader, persistent=True)
    val_loader = None
    if val_set is not None and t.val_batches and is_main:
        # Global batches, as one process reads them; split_batch hands them to the model per process.
        val_sampler = ShardedSampler(len(val_set), min(t.batch_size, len(val_set)), shuffle=False, seed=t.seed)
        val_loader, _, _ = make_loader(val_set, val_sampler, cfg, device, channels_last, world_size)

    # -- models
    torch.manual_seed(t.seed)  # identical initial weights on every rank
    try:  # model.init_generator, model.text_encoder, loss.vgg_weights: missing, foreign or mismatched files
        family = build_family(cfg)
    except (OSError, ValueError) as e:
        return usage_error(str(e))
    torch.manual_seed(t.seed + rank)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for role, model in family.models.items():
        if t.sync_bn and world_size > 1:
            family.models[role] = model = convert_sync_batchnorm(model, include_batchnorm2d=True)
        model.to(device, memory_format=memory_format).train()
    G_raw, D_raw = family.models["G"], family.models["D"]
    if cfg.loss.penalty != "none" and t.sync_bn and world_size > 1 and batch_normalized(D_raw):
        return usage_error(f"loss.penalty {cfg.loss.penalty} differentiates the discriminator twice, which "
                           f"synchronized BatchNorm does not support: drop --train.sync_bn or use model.d_norm "
                           f"layer, instance or none")
    G, D = G_raw, D_raw
    if world_size > 1:
        ids = [local_rank] if device.type == "cuda" else None
        G = DDP(G_raw, device_ids=ids)
        D = DDP(D_raw, device_ids=ids, **no_forward_buffer_sync())
    D_plain = D_raw
    if t.compile:
        G, D, D_plain = torch.compile(G), torch.compile(D), torch.compile(D_raw)
    nets = {"G": G, "D": D, "D_plain": D_plain, "D_eager": D_raw}
    optimizers = {role: make_optimizer(m.parameters(), cfg, device) for role, m in family.models.items()}
    scalers = {role: torch.amp.GradScaler(device.type, enabled=precision == "fp16") for role in optimizers}
    watch = LossWatch(every=2 * t.log_every)  # about a D and a G loss per step
    ema = None
    if cfg.optim.ema > 0:
        ema = EMA(G_raw, cfg.optim.ema)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # Autocast's cache of cast weights must not outlive a capture (torch.cuda.graphs docs).
    autocast = ((lambda: torch.autocast(device.type, dtype=amp_dtype, cache_enabled=not t.cuda_graph))
                if amp_dtype else nullcontext)
    graphed = graphed_train_step(family, nets, optimizers, scalers, autocast, watch) if t.cuda_graph else None

    # -- resume
    step, epoch, start_batch = 0, 0, 0
    best = math.inf
    # Each logged value as of the newest step that computed it (a lazy penalty, a generator loss under
    # n_critic): checkpointed, so a resumed run logs them from its first step, as an unbroken run does.
    latest: dict[str, torch.Tensor | float] = {}
    resumed_from, started_with, changes = None, cfg.to_dict(), {}  # config.json keeps the first; resumes log changes
    if t.resume:
        try:
            found = (ckpt_io.load_latest(out, map_location=device) if t.resume == "auto"
                     else (ckpt_io.load(t.resume, map_location=device), Path(t.resume)))
        except (OSError, ValueError) as e:  # missing, torn or foreign (checkpoint.CheckpointError)
            return usage_error(f"{'--train.resume auto' if t.resume == 'auto' else '--train.resume'}: {e}")
        if found is None:
            if (out / "best.pt").is_file():  # starting over here would set it aside and empty metrics.jsonl
                return usage_error(f"--train.resume auto: {out} holds no step checkpoint but holds best.pt: "
                                   f"continue from it with --train.resume {out / 'best.pt'}")
            if is_main:
                print(f"fastgan: no checkpoint in {out} yet; starting a fresh run", flush=True)
        else:
            state, path = found
            if not same_networks(state, family):
                return usage_error(f"--train.resume: {path} holds {state['family']} networks {state['model_args']}, "
                                   f"which differ from this config's {family.name} {family.model_args}")
            resumed_from, started_with = path, state.get("config", started_with)
            changes = {key: change for key, change in config_changes(started_with, cfg.to_dict()).items()
                       if key != "train.resume"}
            moved = data_position_changes(changes, state.get("train_samples", len(train_set)), len(train_set))
            if moved:
                return usage_error(f"resuming {path} with these options changed would replay or skip samples: "
                                   f"{'; '.join(moved)}; pass the checkpoint's values or start a fresh run")
            for role, model in family.models.items():
                model.load_state_dict(state["models"][role])
                optimizers[role].load_state_dict(state["optimizers"][role])
                if t.cuda_graph:  # the saved groups' flags replace ours: a run saved eagerly has capturable off
                    for group in optimizers[role].param_groups:
                        group["capturable"] = True
                scalers[role].load_state_dict(state["scalers"][role])
            if ema is not None and state.get("ema"):
                ema.load_state_dict(state["ema"])
            step, epoch, start_batch = state["step"], state["epoch"], state["batch"]
            best = state.get("best", math.inf)
            latest = dict(state.get("logs", {}))
            rngs = state["rng"]
            if len(rngs) == world_size:
                ckpt_io.set_rng_state(rngs[rank])
            else:
                reseed_for_step(t.seed, rank, step)
                if is_main:
                    print(f"fastgan: {path} was written by {len(rngs)} processes, this run has {world_size}: "
                          f"random streams are reseeded (the resume is not bit-exact)", flush=True)
            if is_main:
                print(f"fastgan: resumed from {path} at step {step} (epoch {epoch}, batch {start_batch})",
                      flush=True)
                if changes:
                    print("fastgan: changed options: " + ", ".join(f"{key} {old!r} -> {new!r}"
                                                                    for key, (old, new) in changes.items()),
                          flush=True)
    elif ckpt_io.list_checkpoints(out) or (out / "best.pt").is_file():  # step checkpoints deleted, best.pt kept
        out = next_free_dir(out)
        if is_main:
            print(f"fastgan: {t.out_dir} already holds a run (continue it with --train.resume auto); this fresh "
                  f"run writes to {out}", flush=True)

    if t.resume and world_size > 1:
        dist.barrier(group=control)  # every process has read its checkpoint before rank 0 moves any
    if t.resume and is_main:
        aside = ckpt_io.set_aside_after(out, step, lambda target: set_aside_history_after(out, target, step))
        if aside is not None:
            print(f"fastgan: {out} held {aside[1]} checkpoint(s) after step {step}, from a run this one does not "
                  f"continue; moved them, and what that run logged after step {step}, to {aside[0]}", flush=True)

    def resume_options(what: str) -> str:
        """The options that continue this run: a fresh run redirected to out-2 must name its folder."""
        return f"--train.resume {what}" if out == Path(t.out_dir) else f"--train.out_dir {out} --train.resume {what}"

    epochs = total_epochs(cfg)
    total_steps = epochs * sampler.steps_per_epoch
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)

    # -- logging (rank 0 only)
    writer = progress = metrics_file = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path = out / "metrics.jsonl"
        if metrics_path.exists():  # drop lines a crashed run wrote after the checkpoint we resume from
            logged = metrics_path.read_text()
            kept = "".join(line + "\n" for line in logged.splitlines() if logged_by_step(line, step))
            if kept != logged:  # rewritten whole or not at all: a failed write must not cut the log short
                ckpt_io.write_bytes_atomic(kept.encode(), metrics_path)
        metrics_file = open(metrics_path, "a")
        if resumed_from is None or not (out / "config.json").exists():
            (out / "config.json").write_text(json.dumps(started_with, indent=2))
        if changes:
            with open(out / "config_changes.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "changes": changes}) + "\n")
        from torch.utils.tensorboard import SummaryWriter
        # TensorBoard hides the events at and after purge_step: the checkpoint's own step was logged before it.
        writer = SummaryWriter(out / "tensorboard", purge_step=step + 1)
        print(f"fastgan: {family.name} on {cfg.data.dataset} ({len(train_set)} training samples), "
              f"{world_size} process(es) on {device.type}, {precision}, batch {t.batch_size}, "
              f"{total_steps} steps, writing to {out}", flush=True)
        print(f"fastgan: data loader: {loader_name} ({loader_reason})", flush=True)
        if graphed is not None:
            print(f"fastgan: CUDA graph: {WARMUP_STEPS} eager steps, then the step is captured and replayed (again "
                  f"after each learning-rate change; a batch of other shapes runs eagerly)", flush=True)
        for note in family.notes:
            print(f"fastgan: {note}", flush=True)
        if cfg.loss.gan_mode == "wgan" and cfg.loss.penalty != "wgan-gp":
            print("fastgan: loss.gan_mode wgan is the Wasserstein critic loss; without loss.penalty wgan-gp it has "
                  "no Lipschitz constraint (no weight clipping is applied either)", flush=True)
        if cfg.loss.penalty != "none":
            every = cfg.loss.penalty_every
            when = (f" on one step in {every} (steps 0, {every}, {2 * every}, ...), weighted x {every}"
                    if every > 1 else "")
            print(f"fastgan: discriminator loss + {cfg.loss.penalty_weight:g} x {cfg.loss.penalty} gradient "
                  f"penalty{when}", flush=True)
        if cfg.optim.n_critic > 1:
            print(f"fastgan: {cfg.optim.n_critic} discriminator updates per generator update, each on its own "
                  f"batch (steps count batches)", flush=True)
        if cfg.loss.penalty == "wgan-gp" and batch_normalized(D_raw):
            print("fastgan: the critic has batch norm, which mixes the samples whose gradients WGAN-GP penalizes one "
                  "by one (Gulrajani et al. use none); model.d_norm layer, instance or none avoids it", flush=True)
        if t.progress:
            from tqdm import tqdm
            # Redirected to a file (a batch job's log), each refresh is another line: 10 a second would add
            # about 100 MB a day, so the bar refreshes there every PROGRESS_FILE_INTERVAL_S (its monitor
            # thread forces a refresh after maxinterval, 10 s by default: that goes up with it).
            interval = 0.1 if sys.stdout.isatty() else PROGRESS_FILE_INTERVAL_S
            progress = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, file=sys.stdout,
                            mininterval=interval, maxinterval=max(10.0, interval))

    def log(record: dict, scalars: bool = True) -> None:
        """A metrics.jsonl line and, with `scalars`, its numbers as TensorBoard scalars at its step."""
        with writing(f"{out / 'metrics.jsonl'}"):
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
        if not scalars:
            return
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                writer.add_scalar(key, value, record["step"])

    # A resumed step whose checkpoint is in out_dir is written: a run with nothing left to train (a job
    # script that always resumes) must not validate and write it again.
    saved_step = step if resumed_from is not None and (out / ckpt_io.checkpoint_name(step)).is_file() else -1

    def save(reason: str, also_best: bool = False) -> Path | None:
        """Everything an exact resume needs; every rank contributes its RNG state. Weights that are not
        finite are never written: they would also rotate good checkpoints out (keep_last)."""
        nonlocal saved_step
        watch.check()  # a bad loss is named before the weights it spoiled
        models = {role: m.state_dict() for role, m in family.models.items()}
        if ema is not None:
            models["G_ema"] = ema.module.state_dict()
        bad = nonfinite_role({role: sd.values() for role, sd in models.items()})  # equal on all ranks
        if bad is not None:
            raise NonFinite(f"non-finite weights: the {bad} weights or statistics hold inf or nan")
        saved_step = step
        rngs = [None] * world_size
        if world_size > 1:
            dist.all_gather_object(rngs, ckpt_io.rng_state())
        else:
            rngs = [ckpt_io.rng_state()]
        if not is_main:
            return None
        state = {"format_version": ckpt_io.FORMAT_VERSION, "family": family.name, "model_args": family.model_args,
                 "models": models, "config": cfg.to_dict(),
                 "optimizers": {r: o.state_dict() for r, o in optimizers.items()},
                 "scalers": {r: s.state_dict() for r, s in scalers.items()},
                 "ema": ema.state_dict() if ema is not None else {},
                 "rng": rngs, "step": step, "epoch": epoch, "batch": start_batch, "train_samples": len(train_set),
                 "best": best, "logs": {k: float(v) for k, v in latest.items()}, "reason": reason}
        with writing(f"the checkpoint of step {step} into {out}"):
            path = ckpt_io.save_atomic(state, out / ckpt_io.checkpoint_name(step))
            ckpt_io.prune(out, t.keep_last)
            if also_best:
                ckpt_io.copy_atomic(path, out / "best.pt")
        return path

    def eval_generator():
        return ema.module if ema is not None else G_raw

    def write_samples(batch: dict) -> None:
        G_eval = eval_generator().eval()
        with autocast():
            picture = grid(family.sample_rows(G_eval, batch))
        G_eval.train()
        with writing(f"the sample grid of step {step} into {out / 'samples'}"):
            save_image(picture, out / "samples" / f"step_{step:08d}.png")
        writer.add_image("samples", picture, step, dataformats="HWC")

    def all_ranks_sum(n: int) -> int:
        if world_size == 1:
            return n
        total = torch.tensor([float(n)])
        dist.all_reduce(total, group=control)
        return int(total.item())

    def report_skipped(counted_epoch: int, stretch: str) -> None:
        """Prints and logs (metrics.jsonl, TensorBoard: skipped_samples) how many samples all ranks skipped
        since the last report, then counts from zero."""
        nonlocal skipped
        skipped = all_ranks_sum(skipped)
        if is_main and skipped:
            print(f"\nfastgan: epoch {counted_epoch}{stretch}: skipped {skipped} unreadable sample(s); the warnings "
                  f"above name the files", flush=True)
            log({"step": step, "epoch": counted_epoch, "skipped_samples": skipped})
        skipped = 0

    def finish_stage(reason: str) -> Path | None:
        """At an epoch's end (and the run's): validate, report skipped files, checkpoint, keep the best."""
        nonlocal best
        watch.check()  # no validation of weights a bad loss spoiled
        scores = {}
        if val_loader is not None:
            G_eval = eval_generator().eval()
            batches = (to_device(piece, device, channels_last)
                       for _, b in zip(range(t.val_batches), val_loader) for piece in split_batch(b, per_rank))
            with autocast():
                scores = family.evaluate(G_eval, batches)
            G_eval.train()
        report_skipped(epoch - 1 if start_batch == 0 else epoch, "")
        improved = False
        if is_main:
            if scores:
                log({"step": step, "epoch": epoch, **scores})
            metric = scores.get(family.best_metric) if family.best_metric else None
            improved = metric is not None and metric < best
            if improved:
                best = metric
        return save(reason, also_best=improved)

    def agree(images_here: int, stop_requested: bool) -> tuple[bool, bool, int]:
        """(step?, stop?, images in the step): all ranks take a step only if all have data (DDP's backward
        needs every one), and stop together if any was signalled."""
        if world_size == 1:
            return images_here > 0, stop_requested, images_here
        flags = torch.tensor([float(images_here == 0), float(stop_requested), float(images_here)])
        dist.all_reduce(flags, group=control)
        return flags[0].item() == 0, flags[1].item() > 0, int(flags[2].item())

    # -- the loop
    stop = StopRequest()
    images = skipped = 0
    window_start, window_images = time.perf_counter(), 0
    last_logs: dict = {}
    exit_code, end_reason, stopping = 0, "finished", False
    try:
        # Steps skipped for unreadable data push the step count past the epochs: the epochs end the run.
        while step < total_steps and epoch < epochs and not stopping:
            factor = lr_factor(cfg, epoch)
            lr_changed = False
            for opt in optimizers.values():
                for group in opt.param_groups:
                    lr_changed |= group["lr"] != cfg.optim.lr * factor
                    group["lr"] = cfg.optim.lr * factor
            if graphed is not None and lr_changed:
                graphed.invalidate()  # the captured optimizer kernels hold the old rate
            sampler.set_epoch(epoch, start_batch)
            if hasattr(train_set, "set_epoch"):  # DALI draws crops in this process; torch indices carry it
                train_set.set_epoch(epoch)
            pass_start, pass_start_step = start_batch, step
            for batch in loader:
                skipped_here = batch.pop("skipped", 0)
                have_data, stopping, n = agree(family.images_seen(batch) if batch else 0, stop.requested)
                if stopping:  # the step the signal came in has finished; this batch is left for the resume
                    break
                start_batch += 1
                skipped += skipped_here
                if have_data:
                    batch = to_device(batch, device, channels_last)
                    if graphed is None:
                        logs = train_step(family, nets, optimizers, scalers, autocast, batch, ema, step, watch)
                    else:
                        logs = graphed(batch, step)
                        if ema is not None:
                            ema.update_parameters(G_raw)
                    latest.update({k: v.detach() for k, v in logs.items()})
                    step += 1
                    images += n
                    window_images += n
                    if is_main and (step % t.log_every == 0 or step == total_steps):
                        elapsed = time.perf_counter() - window_start
                        last_logs = {k: float(v) for k, v in latest.items()}
                        record = {"step": step, "epoch": epoch, **last_logs, "lr": cfg.optim.lr * factor,
                                  "img_per_s": window_images / max(elapsed, 1e-9)}
                        if device.type == "cuda":
                            record["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
                        log(record)
                        if progress is not None:
                            progress.set_postfix({k: f"{v:.3g}" for k, v in record.items()
                                                  if k.startswith("loss") or k == "img_per_s"}, refresh=False)
                        window_start, window_images = time.perf_counter(), 0
                    if is_main and (step % t.sample_every == 0 or step == total_steps):
                        write_samples(batch)
                    if progress is not None:
                        progress.update(1)
                    # Extra checkpoints only: the epoch's end and the run's end write their own.
                    if (t.ckpt_every and step % t.ckpt_every == 0 and step < total_steps
                            and start_batch < sampler.steps_per_epoch):
                        save("periodic")
                if step >= total_steps:
                    break
            if start_batch == sampler.steps_per_epoch:
                if pass_start == 0 and step == pass_start_step:
                    raise NoTrainingData(
                        f"epoch {epoch} trained no step: {all_ranks_sum(skipped)} of its "
                        f"{sampler.steps_per_epoch * t.batch_size} samples from {cfg.data.root or cfg.data.dataset} "
                        f"were skipped (unreadable, or smaller than data.crop_size; the warnings above name the "
                        f"files)" + (f"; with {world_size} processes a step is skipped when any process's share of "
                                     f"it is all unreadable" if world_size > 1 else ""))
                epoch, start_batch = epoch + 1, 0
                finish_stage("epoch end")
                # A signal during the epoch's end work (validation, the checkpoint) stops the run here,
                # with that checkpoint, not one step into the next epoch (a run this epoch ended, ended).
                if step < total_steps and epoch < epochs:
                    stopping |= agree(1, stop.requested)[1]
        if stopping:
            end_reason = "stopped by signal"
            report_skipped(epoch, " until the stop")
            if saved_step != step:
                save(end_reason)
        elif saved_step != step:
            finish_stage("step budget reached")
    except NonFinite as e:
        end_reason, exit_code = str(e), 1
        step = step if e.step is None else e.step
    except NoTrainingData as e:
        end_reason, exit_code = str(e), 2
    except OutputWriteError as e:
        end_reason, exit_code = str(e), 3
    finally:
        stop.restore()
        if progress is not None:
            progress.close()
        if isinstance(loader, DALILoader):  # its pipeline outlives an epoch (validation reads through torch)
            loader.close()
    if is_main:
        if exit_code == 1:
            good = newest_good_checkpoint(out, resumed_from)
            advice = (f"the newest good checkpoint is {good}: resume from it with "
                      f"{resume_options(str(good))} and a lower learning rate or another "
                      f"train.precision" if good is not None else
                      "there is no earlier checkpoint: start again with a lower learning rate or another "
                      "train.precision")
            print(f"fastgan: {end_reason} at step {step}; the state after it may be corrupt, so no checkpoint was "
                  f"written; {advice}", flush=True)
        elif exit_code == 2:
            usage_error(end_reason)
        elif exit_code == 3:
            good = newest_good_checkpoint(out, resumed_from)
            sys.stderr.write(f"fastgan.train: error: {end_reason} (at step {step}); "
                             + (f"the checkpoints written before are whole, the newest {good}: once {out} can be "
                                f"written again, continue with {resume_options('auto')}\n" if good is not None else
                                f"no checkpoint was written yet: once {out} can be written again, start again\n"))
        elif stopping:
            print(f"fastgan: {end_reason} at step {step}; wrote {out / ckpt_io.checkpoint_name(step)}; continue "
                  f"with {resume_options('auto')}", flush=True)
        # The summary goes to metrics.jsonl only: its losses are the last logged step's again, a second point
        # at that step. A run that could not write its outputs may not write these either: what it said stands.
        unwritable = (OutputWriteError, OSError) if exit_code == 3 else ()
        with suppress(*unwritable):
            log({"step": step, "epoch": epoch, "images": images, **last_logs, "result": end_reason,
                 "summary": True}, scalars=False)
        with suppress(*unwritable):
            writer.close()
            metrics_file.close()
        losses = ", ".join(f"{k} {v:.4g}" for k, v in last_logs.items() if k.startswith("loss"))
        if exit_code not in (2, 3):
            print(f"fastgan: {end_reason}: step {step}, {images} images this run; {losses + '; ' if losses else ''}"
                  f"outputs in {out}",
                  flush=True)
    if world_size > 1:
        dist.destroy_process_group()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
