"""`build_loaders`: a dataset name and a loader name in, train and validation loaders out (issue 4)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dali_loader import DaliLoader, dali_import_error
from .datasets import ArraySplit, DataError, FileSplit, list_datasets, read_dataset
from .tensor_loader import TensorLoader
from .torch_loader import TorchLoader

LOADERS = ("auto", "dali", "tensor", "torch")


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


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Resize uint8 [N, C, H, W] to [N, C, size, size], bilinear with antialiasing, in chunks."""
    out = np.empty((len(images), images.shape[1], size, size), np.uint8)
    for lo in range(0, len(images), chunk):
        x = torch.from_numpy(images[lo:lo + chunk]).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out[lo:lo + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


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
                  img_size: int | None = None, device="cpu", seed: int = 0, flip: bool | None = None,
                  num_workers: int = 2, skip_bad_images: bool = False):
    """Read ``dataset`` and build its training and validation loaders.

    Args:
        dataset: one of `list_datasets()`; None means ``digits``.
        data_dir: where the dataset's files are (see `fastmotive.data.datasets` for each layout).
        loader: ``auto``, ``dali``, ``tensor`` (array datasets only) or ``torch``.
        batch_size: images per batch, >= 2; training drops the last partial batch, validation keeps it.
        img_size: side of the output images; None keeps the dataset's (32 digits/CIFAR, 28 MNIST, 224 folder).
        device: where batches are delivered (and, for `tensor` and `dali`, where the work happens).
        seed: with the epoch, fixes the training order and augmentation.
        flip: random horizontal flip in training; None means the dataset's default (off for digit datasets).
        num_workers: torch DataLoader workers, or DALI CPU threads (at least 1).
        skip_bad_images: leave out image files that fail the check made when reading the folder (markers,
            header); a warning reports the count and the files.

    Returns:
        ``(train, val, info)``: two loaders with ``len()``, ``epoch_batches(epoch, start_batch=0)`` and
        ``iter()``, each yielding float32 [B, 3, S, S] normalized images and int64 [B] labels on
        ``device``; and a `DatasetInfo`.

    Raises:
        DataError: bad options (all listed together), an unusable loader, or bad files (named).
    """
    dev = _check_args(dataset, loader, batch_size, img_size, device, seed, num_workers)
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
    if not files and size != raw.img_size:
        train_split = ArraySplit(resize_images(raw.train.images, size), raw.train.labels)
        val_split = ArraySplit(resize_images(raw.val.images, size), raw.val.labels)
    if len(train_split.labels) < batch_size:
        raise DataError(f"dataset {raw.name!r} has {len(train_split.labels)} training images, fewer than "
                        f"batch_size={batch_size}: an epoch would hold no full batch; lower --batch-size")
    common = {"batch_size": batch_size, "seed": seed, "flip": raw.flip if flip is None else bool(flip),
              "mean": raw.mean, "std": raw.std, "device": dev}
    if loader == "tensor":
        make = TensorLoader
    elif loader == "torch":
        common.update(img_size=size, num_workers=num_workers)
        make = TorchLoader
    else:
        common.update(img_size=size, num_threads=num_workers)
        make = DaliLoader
    train = make(train_split, train=True, **common)
    val = make(val_split, train=False, **common)
    info = DatasetInfo(raw.name, raw.num_classes, size, tuple(raw.mean), tuple(raw.std), len(train_split.labels),
                       len(val_split.labels), loader)
    return train, val, info
