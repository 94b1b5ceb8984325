"""Dataset readers: the standard on-disk layouts, read into memory and checked (issue 4, "Datasets").

Each reader returns a :class:`RawDataset`: either uint8 image arrays (digits, CIFAR, the MNIST family) or a
list of image files (an image folder). Readers check everything they read and raise :class:`DataError`
naming the file, what is wrong and the layout expected; they never return a partial dataset.

Layouts (``data_dir`` is ``--data-dir``):

- ``digits``: scikit-learn's ``load_digits`` (embedded, no files); 8x8 upscaled to 32x32, seeded 80/20 split.
- ``cifar10``: ``data_dir/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (python pickles).
- ``cifar100`` / ``cifar100_coarse``: ``data_dir/cifar-100-python/{train, test, meta}``, fine (100) or
  coarse (20) labels.
- ``mnist`` / ``fashion_mnist``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``data_dir``,
  ``data_dir/MNIST/raw`` or ``data_dir/FashionMNIST/raw`` (torchvision); ``fashion_mnist`` defaults to
  ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
- ``folder``: ``data_dir/train/<class>/*.{jpg,jpeg,png}`` and ``data_dir/val/`` (or ``validation/``).

This module reads the digits and the MNIST family and looks readers up by name; the CIFAR readers are in
``cifar.py``, the image-folder reader in ``image_folder.py``, the types they return in ``raw_dataset.py``.
All their public names are importable from here.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fastmotive.data.datasets.base import (_READERS, ArraySplit, FileSplit, RawDataset, _check_labels,
                                           _need_dir, register_dataset)
from fastmotive.data.datasets.cifar import (CIFAR10_LAYOUT, CIFAR10_MEAN, CIFAR10_STD, CIFAR100_LAYOUT,
                                            CIFAR100_MEAN, CIFAR100_STD, read_cifar10, read_cifar100,
                                            read_cifar100_coarse)
from fastmotive.data.datasets.image_folder import (DAMAGED_INSIDE, FOLDER_LAYOUT, IMAGE_EXTENSIONS,
                                                   IMAGENET_MEAN, IMAGENET_STD, check_image_file, read_folder)
from fastmotive.errors import DataError

__all__ = [
    "CIFAR10_LAYOUT", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_LAYOUT", "CIFAR100_MEAN", "CIFAR100_STD",
    "DAMAGED_INSIDE", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "FASHION_MNIST_SYSTEM_DIR", "FOLDER_LAYOUT",
    "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "MNIST_MEAN", "MNIST_STD", "ArraySplit", "DataError",
    "FileSplit", "RawDataset", "check_image_file", "list_datasets", "read_cifar10", "read_cifar100",
    "read_cifar100_coarse", "read_dataset", "read_digits", "read_fashion_mnist", "read_folder", "read_idx",
    "read_mnist", "register_dataset",
]

# Published per-channel statistics of the training sets (torchvision / timm conventions); CIFAR's and
# ImageNet's are with their readers.
MNIST_MEAN, MNIST_STD = (0.1307,) * 3, (0.3081,) * 3
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,) * 3, (0.3530,) * 3

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    return sorted(_READERS)


def read_dataset(name: str | None, data_dir: str | os.PathLike | None = None,
                 skip_bad_images: bool = False) -> RawDataset:
    """Read dataset ``name`` (``None`` means ``digits``) from ``data_dir``.

    Raises:
        DataError: unknown name, or anything wrong on disk (the message names the file and the layout).
    """
    name = "digits" if name is None else name.lower().replace("-", "_")
    if name not in _READERS:
        raise DataError(f"unknown dataset {name!r}; valid choices: {', '.join(list_datasets())}")
    return _READERS[name](None if data_dir is None else Path(data_dir), skip_bad_images)


# --------------------------------------------------------------------------------------------------------
# digits


@register_dataset("digits")
def read_digits(data_dir: Path | None = None, skip_bad_images: bool = False) -> RawDataset:
    """scikit-learn's 1797 8x8 digits, upscaled to 32x32 (bilinear), fixed stratified 80/20 split (seed 0)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [N, 1, 8, 8], 0..16 -> 0..255
    big = torch.nn.functional.interpolate(torch.from_numpy(small).float(), size=(32, 32), mode="bilinear",
                                          align_corners=False)
    images = big.round_().clamp_(0, 255).to(torch.uint8).numpy()
    labels = digits.target.astype(np.int64)
    # Seed 0 whatever the training seed: the validation split is the same in every run.
    tr, va = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    tr, va = np.sort(tr), np.sort(va)
    train = ArraySplit(images[tr], labels[tr])
    mean = round(float(train.images.mean()) / 255.0, 4)  # statistics of this training split
    std = round(float(train.images.std()) / 255.0, 4)
    return RawDataset("digits", 10, train, ArraySplit(images[va], labels[va]), (mean,) * 3, (std,) * 3,
                      img_size=32, flip=False, classes=tuple(str(i) for i in range(10)))


# --------------------------------------------------------------------------------------------------------
# MNIST family (idx files)

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 0x00000803, 0x00000801  # ubyte data, 3 resp. 1 dimensions


def _idx_layout(sub: str) -> str:
    return ("{train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte} (each optionally .gz) in DIR, DIR/" + sub + "/raw")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one idx file (optionally gzipped), checking its magic number and its exact size."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); the file is truncated or "
                        f"corrupt") from e
    if len(data) < 4:
        raise DataError(f"{path}: truncated idx file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: bad idx magic number 0x{found:08x}, expected 0x{magic:08x} "
                        f"({'images, 3-D' if magic == _IDX_IMAGES_MAGIC else 'labels, 1-D'} ubyte)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated idx file ({len(data)} bytes, header needs {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and 0 in dims[1:]:
        raise DataError(f"{path}: the header promises {dims[1]}x{dims[2]}-pixel images: an image needs at least "
                        "one pixel")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{path}: {'truncated' if len(data) < expected else 'oversized'} idx file: "
                        f"{len(data)} bytes, header {list(dims)} promises {expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()  # writable, owns its memory


def _find_idx(dirs: list[Path], stem: str, layout: str) -> Path:
    for d in dirs:
        for candidate in (d / stem, d / (stem + ".gz")):
            if candidate.is_file():
                return candidate
    raise DataError(f"missing file {stem}[.gz]: looked in {', '.join(str(d) for d in dirs)}; "
                    f"expected layout: {layout}")


def _read_mnist_family(name: str, data_dir: Path | None, sub: str, mean, std) -> RawDataset:
    layout = _idx_layout(sub)
    if data_dir is None and name == "fashion_mnist":
        if not FASHION_MNIST_SYSTEM_DIR.is_dir():
            raise DataError(f"dataset 'fashion_mnist' needs --data-dir (or `apt-get install "
                            f"dataset-fashion-mnist`, which installs {FASHION_MNIST_SYSTEM_DIR}); "
                            f"expected layout: {layout}")
        data_dir = FASHION_MNIST_SYSTEM_DIR
    root = _need_dir(data_dir, name, layout)
    dirs = [root, root / sub / "raw", root / "raw"]
    splits = {}
    for split, (img_stem, lab_stem) in _IDX_FILES.items():
        img_path, lab_path = _find_idx(dirs, img_stem, layout), _find_idx(dirs, lab_stem, layout)
        images = read_idx(img_path, _IDX_IMAGES_MAGIC)
        labels = _check_labels(read_idx(lab_path, _IDX_LABELS_MAGIC), 10, lab_path)
        if len(images) != len(labels):
            raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} "
                            f"labels")
        splits[split] = ArraySplit(np.ascontiguousarray(images[:, None]), labels)
    return RawDataset(name, 10, splits["train"], splits["val"], mean, std, 28, False,
                      tuple(str(i) for i in range(10)))


@register_dataset("mnist")
def read_mnist(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """MNIST idx files (60000 train / 10000 test, 28x28 grayscale)."""
    return _read_mnist_family("mnist", data_dir, "MNIST", MNIST_MEAN, MNIST_STD)


@register_dataset("fashion_mnist")
def read_fashion_mnist(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """Fashion-MNIST idx files; defaults to Debian's ``dataset-fashion-mnist`` install."""
    return _read_mnist_family("fashion_mnist", data_dir, "FashionMNIST", FASHION_MNIST_MEAN,
                              FASHION_MNIST_STD)
