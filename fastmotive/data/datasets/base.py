"""What a dataset reader returns (RawDataset, its two kinds of split), the reader registry, shared checks."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmotive.errors import DataError


@dataclass(frozen=True)
class ArraySplit:
    """One split held in memory: ``images`` uint8 [N, C, H, W] (C is 1 or 3), ``labels`` int64 [N]."""
    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class FileSplit:
    """One split of an image folder: encoded image ``files`` and their int64 ``labels``."""
    files: tuple[str, ...]
    labels: np.ndarray


@dataclass(frozen=True)
class RawDataset:
    """What a reader returns; ``build_loaders`` turns it into loaders."""
    name: str
    num_classes: int
    train: ArraySplit | FileSplit
    val: ArraySplit | FileSplit
    mean: tuple[float, float, float]  # per channel, on the [0, 1] scale
    std: tuple[float, float, float]
    img_size: int                     # default side of the square images the loaders produce
    flip: bool                        # default for the horizontal flip (off for digit datasets)
    classes: tuple[str, ...]
    skipped: int = 0                  # undecodable images left out (folder with skip_bad_images=True)


# name -> reader; each reader module registers its readers when imported, and datasets.py imports them all
_READERS: dict[str, Callable[..., RawDataset]] = {}


def register_dataset(name: str):
    """Register a reader ``fn(data_dir, skip_bad_images) -> RawDataset`` under ``name``."""
    def wrap(fn):
        if name in _READERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _READERS[name] = fn
        return fn
    return wrap


def _check_labels(labels: np.ndarray, num_classes: int, path) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be a 1-D list of integers, got dtype {labels.dtype} "
                        f"shape {labels.shape}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: {int(bad.sum())} labels outside [0, {num_classes}), first at index {i}: "
                        f"{int(labels[i])}")
    return labels.astype(np.int64)


def _need_dir(data_dir: Path | None, name: str, layout: str) -> Path:
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir; expected layout: {layout}")
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such directory (dataset {name!r}); expected layout: {layout}")
    return data_dir
