"""`build_loaders`: a dataset name and a loader name in, train and validation loaders out (issue 4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastmotive.data.augment.policy import parse_policy
from fastmotive.data.datasets.readers import ArraySplit, DataError, FileSplit, list_datasets, read_dataset
from fastmotive.data.loaders.dali import DaliLoader, dali_import_error
from fastmotive.data.loaders.dataloader import TorchLoader
from fastmotive.data.loaders.epoch_plan import RRC_RATIO, RRC_SCALE
from fastmotive.data.loaders.tensor import TensorLoader
from fastmotive.data.resize import resize_images  # noqa: F401  (tune-k's folds resize in memory)
from fastmotive.errors import ConfigError

LOADERS = ("auto", "dali", "tensor", "torch")
# The default BatchNorm calibration sample: a tenth of the training split, at most 2000 images (Once-for-All's
# count). A calibration costs about as many forward passes of a model as it has images, so a tenth keeps it near
# a tenth of a digits epoch and a few percent of a CIFAR one (docs/benchmarks.md), at the accuracy of the whole
# split on digits (docs/reproduction.md).
DEFAULT_CALIBRATION_SHARE, DEFAULT_CALIBRATION_MAX = 10, 2000
# The seed stream the calibration sample is drawn from, apart from every training epoch's: the sample depends on
# the seed only, never on how far training got.
CALIBRATION_STREAM = 1_000_000_000


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about the data it is fed."""
    name: str                              # dataset name, e.g. "cifar10"
    num_classes: int
    img_size: int                          # side of the square images in every batch
    mean: tuple[float, float, float]       # normalization applied, on the [0, 1] scale
    std: tuple[float, float, float]
    train_size: int                        # images in the training split (before dropping the last batch)
    val_size: int
    loader: str                            # the loader in use ("auto" resolved)


def list_loaders() -> list[str]:
    """Names accepted by ``--loader``."""
    return list(LOADERS)


def choose_loader(files: bool, device: torch.device) -> str:
    """What ``--loader auto`` picks, from the measurements in docs/data.md.

    Arrays: `tensor`, on any device (no workers, a handful of tensor ops per batch; 3-6x the torch
    DataLoader on the 2-core CPU). Files: `dali` when it imports (GPU decoding with CUDA; its CPU pipeline
    also beat the torch DataLoader on the CPU), else `torch`.
    """
    if not files:
        return "tensor"
    return "dali" if dali_import_error() is None else "torch"


def calibration_images(setting: int | None, train_images: int) -> int:
    """The images BatchNorm calibration reads: the ``--bn-calibrate`` setting, or the default for the split."""
    if setting is not None:
        return setting
    return min(DEFAULT_CALIBRATION_MAX, max(train_images // DEFAULT_CALIBRATION_SHARE, 1))


def sample_split(split: ArraySplit | FileSplit, images: int, seed: int) -> ArraySplit | FileSplit:
    """A seeded random sample of `images` images of `split` (all of them, shuffled, when it has fewer)."""
    rng = np.random.Generator(np.random.PCG64([seed, CALIBRATION_STREAM]))
    index = rng.permutation(len(split.labels))[:images]
    if isinstance(split, FileSplit):
        return FileSplit(tuple(split.files[i] for i in index), split.labels[index])
    return ArraySplit(split.images[index], split.labels[index])


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_augmentation(flip, scale, ratio, aug_repeats, aa, rank, world_size) -> list[str]:
    problems = []
    if flip is not None and not isinstance(flip, bool) and not (isinstance(flip, (int, float)) and 0 <= flip <= 1):
        problems.append(f"flip={flip!r} (--hflip) must be None, True, False or a probability in [0, 1]")
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        problems.append(f"scale={scale!r} (--scale) must be two numbers 0 < MIN <= MAX <= 1")
    if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
        problems.append(f"ratio={ratio!r} (--ratio) must be two numbers 0 < MIN <= MAX")
    if not _is_int(aug_repeats) or aug_repeats < 0:
        problems.append(f"aug_repeats={aug_repeats!r} (--aug-repeats) must be an integer >= 0 (0 and 1: off)")
    if aa is not None:
        try:
            parse_policy(aa)
        except ConfigError as e:
            problems.append(str(e))
    if not _is_int(world_size) or world_size < 1 or not _is_int(rank) or not 0 <= rank < world_size:
        problems.append(f"rank={rank!r}, world_size={world_size!r}: need integers 0 <= rank < world_size")
    return problems


def _check_args(dataset, loader, batch_size, img_size, device, seed, num_workers) -> torch.device | None:
    problems = []
    if dataset is not None and str(dataset).lower().replace("-", "_") not in list_datasets():
        problems.append(f"dataset={dataset!r} is unknown; valid choices: {', '.join(list_datasets())}")
    if loader not in LOADERS:
        problems.append(f"loader={loader!r} is unknown; valid choices: {', '.join(LOADERS)}")
    if not _is_int(batch_size) or batch_size < 2:
        problems.append(f"batch_size={batch_size!r} must be an integer >= 2 (a training batch of 1 breaks "
                        f"BatchNorm)")
    if img_size is not None and (not _is_int(img_size) or img_size < 8):
        problems.append(f"img_size={img_size!r} must be None (the dataset's size) or an integer >= 8")
    if not _is_int(seed) or seed < 0:
        problems.append(f"seed={seed!r} must be an integer >= 0")
    if not _is_int(num_workers) or num_workers < 0:
        problems.append(f"num_workers={num_workers!r} must be an integer >= 0")
    dev = None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        problems.append(f"device={device!r} is not a torch device ({e})")
    if dev is not None and dev.type == "cuda" and not torch.cuda.is_available():
        problems.append(f"device={device!r} but CUDA is not available here; use device='cpu'")
    if dev is not None and dev.type not in ("cpu", "cuda"):
        problems.append(f"device={device!r}: the loaders support cpu and cuda")
    if problems:
        raise DataError("bad data options: " + "; ".join(problems))
    return dev


def build_loaders(dataset: str | None = "digits", data_dir=None, loader: str = "auto", batch_size: int = 64,
                  img_size: int | None = None, device="cpu", seed: int = 0, flip: bool | float | None = None,
                  num_workers: int = 2, skip_bad_images: bool = False, *, scale=RRC_SCALE, ratio=RRC_RATIO,
                  aug_repeats: int = 0, aa: str | None = None, rank: int = 0, world_size: int = 1,
                  bn_calibrate: int | None = 0):
    """Read ``dataset`` and build its training and validation loaders.

    Args:
        dataset: one of `list_datasets()`; None means ``digits``.
        data_dir: where the dataset's files are (see `fastmotive.data.datasets.readers` for each layout).
        loader: ``auto``, ``dali``, ``tensor`` (array datasets only) or ``torch``.
        batch_size: images per batch and rank, >= 2; training drops the last partial batch, validation keeps it.
        img_size: side of the output images; None keeps the dataset's (32 digits/CIFAR, 28 MNIST, 224 folder).
            Array images are resized per batch on the device, after the crop.
        device: where batches are delivered (and, for `tensor` and `dali`, where the work happens).
        seed: with the epoch, fixes the training order and augmentation.
        flip: probability of a random horizontal flip in training (``--hflip``; True is 0.5, False 0); None
            means the dataset's default (0.5, off for digit datasets).
        num_workers: torch DataLoader workers, or DALI CPU threads (at least 1).
        skip_bad_images: leave out image files that fail the check made when reading the folder (markers,
            header); a warning reports the count and the files.
        scale, ratio: random-resized-crop area and aspect-ratio ranges (image folders; ``--scale``, ``--ratio``).
        aug_repeats: timm's repeated augmentation (``--aug-repeats``): each sampled image this many times per
            epoch, each with its own augmentation, the epoch kept at the dataset's length; 0 off.
        aa: an ``--aa`` spec the `torch` loader applies per sample in its workers (timm's PIL transform);
            the other loaders leave it to the device wrapper (`fastmotive.data.augment.train_augment`).
        rank, world_size: this process's share (`epoch_plan.Sampling`): training batches are rows
            ``[rank b, (rank+1) b)`` of global batches of ``b * world_size``; validation a contiguous chunk.
        bn_calibrate: images of the training split for a BatchNorm calibration sample (None: the default count,
            `calibration_images`; 0: none): a seeded random sample preprocessed as validation is, given as the
            train loader's ``calibration_sample`` loader (shared over ranks as validation is). The recipe asks for
            it with ``--bn-calibrate-from val`` (auto: image folders); without it, calibration reads training
            batches.

    Returns:
        ``(train, val, info)``: two loaders with ``len()``, ``epoch_batches(epoch, start_batch=0)`` and
        ``iter()``, each yielding float32 [B, 3, S, S] normalized images and int64 [B] labels on
        ``device``; and a `DatasetInfo`.

    Raises:
        DataError: bad options (all listed together), an unusable loader, or bad files (named).
    """
    dev = _check_args(dataset, loader, batch_size, img_size, device, seed, num_workers)
    scale, ratio = tuple(scale), tuple(ratio)
    problems = _check_augmentation(flip, scale, ratio, aug_repeats, aa, rank, world_size)
    if problems:
        raise DataError("bad data options: " + "; ".join(problems))
    batch_size, seed, num_workers = int(batch_size), int(seed), int(num_workers)
    img_size = None if img_size is None else int(img_size)
    raw = read_dataset(dataset, data_dir, skip_bad_images)
    files = isinstance(raw.train, FileSplit)
    if loader == "auto":
        loader = choose_loader(files, dev)
    elif loader == "tensor" and files:
        raise DataError(f"loader='tensor' needs an array dataset (digits, cifar*, mnist, fashion_mnist); "
                        f"dataset {raw.name!r} is a folder of image files: use loader='dali', 'torch' or 'auto'")
    size = img_size or raw.img_size
    train_split, val_split = raw.train, raw.val
    global_batch = batch_size * world_size
    if len(train_split.labels) < global_batch:
        raise DataError(f"dataset {raw.name!r} has {len(train_split.labels)} training images, fewer than "
                        f"batch_size={batch_size}" + (f" x {world_size} processes" if world_size > 1 else "")
                        + ": an epoch would hold no full batch; lower --batch-size")
    common = {"batch_size": batch_size, "seed": seed, "flip": raw.flip if flip is None else flip,
              "mean": raw.mean, "std": raw.std, "device": dev, "img_size": size, "rank": rank,
              "world_size": world_size}
    train_only = {"aug_repeats": aug_repeats}
    if loader == "tensor":
        make = TensorLoader
    elif loader == "torch":
        common.update(num_workers=num_workers, scale=scale, ratio=ratio)
        train_only.update(aa=aa)
        make = TorchLoader
    else:
        common.update(num_threads=num_workers, scale=scale, ratio=ratio)
        make = DaliLoader
    train = make(train_split, train=True, **common, **train_only)
    val = make(val_split, train=False, **common)
    sample = calibration_images(bn_calibrate, len(train_split.labels))
    if sample:
        train.calibration_sample = make(sample_split(train_split, sample, seed), train=False, **common)
    info = DatasetInfo(raw.name, raw.num_classes, size, tuple(raw.mean), tuple(raw.std), len(train_split.labels),
                       len(val_split.labels), loader)
    return train, val, info
