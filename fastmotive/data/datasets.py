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
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


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


# Published per-channel statistics of the training sets (torchvision / timm conventions).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
MNIST_MEAN, MNIST_STD = (0.1307,) * 3, (0.3081,) * 3
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,) * 3, (0.3530,) * 3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_READERS: dict[str, Callable[..., RawDataset]] = {}


def register_dataset(name: str):
    """Register a reader ``fn(data_dir, skip_bad_images) -> RawDataset`` under ``name``."""
    def wrap(fn):
        if name in _READERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _READERS[name] = fn
        return fn
    return wrap


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
# CIFAR (python pickle layout)

CIFAR10_LAYOUT = ("DIR/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch, batches.meta}: python "
                  "pickles of dicts with b'data' (uint8 [N, 3072], rows RRR..GGG..BBB of 32x32) and b'labels'")
CIFAR100_LAYOUT = ("DIR/cifar-100-python/{train, test, meta}: python pickles of dicts with b'data' "
                   "(uint8 [N, 3072]), b'fine_labels' and b'coarse_labels'")


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR files hold (dicts, lists, bytes and numpy arrays): loading a file from
    ``--data-dir`` must not run arbitrary code."""

    _ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")})

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise _ForbiddenGlobal(f"{module}.{name}")
        try:  # numpy >= 2 renamed numpy.core to numpy._core; the CIFAR files predate it
            return super().find_class(module.replace("numpy.core.", "numpy._core."), name)
        except ModuleNotFoundError:
            return super().find_class(module.replace("numpy._core.", "numpy.core."), name)


def _load_pickle(path: Path, layout: str) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: missing file; expected layout: {layout}")
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except _ForbiddenGlobal as e:
        raise DataError(f"{path}: the pickle references {e}, which CIFAR files never hold; refusing to load it "
                        f"(unpickling can run code); expected layout: {layout}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError) as e:
        raise DataError(f"{path}: truncated or not a CIFAR python pickle ({type(e).__name__}: {e}); "
                        f"expected layout: {layout}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}; expected layout: {layout}")
    return obj


def _cifar_split(paths: list[Path], label_key: bytes, num_classes: int, layout: str) -> ArraySplit:
    images, labels = [], []
    for path in paths:
        d = _load_pickle(path, layout)
        missing = [k.decode() for k in (b"data", label_key) if k not in d]
        if missing:
            raise DataError(f"{path}: pickle lacks key(s) {missing} (has {sorted(k for k in d)}); "
                            f"expected layout: {layout}")
        data = np.asarray(d[b"data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: b'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
        lab = _check_labels(np.asarray(d[label_key]), num_classes, f"{path} b'{label_key.decode()}'")
        if len(lab) != len(data):
            raise DataError(f"{path}: {len(data)} images but {len(lab)} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return ArraySplit(np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels))


def _meta_names(path: Path, key: bytes, layout: str) -> tuple[str, ...]:
    d = _load_pickle(path, layout)
    if key not in d:
        raise DataError(f"{path}: pickle lacks key {key!r}; expected layout: {layout}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in d[key])


@register_dataset("cifar10")
def read_cifar10(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """CIFAR-10 in ``data_dir/cifar-10-batches-py`` (50000 train / 10000 test)."""
    root = _need_dir(data_dir, "cifar10", CIFAR10_LAYOUT) / "cifar-10-batches-py"
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected layout: {CIFAR10_LAYOUT}")
    train = _cifar_split([root / f"data_batch_{i}" for i in range(1, 6)], b"labels", 10, CIFAR10_LAYOUT)
    val = _cifar_split([root / "test_batch"], b"labels", 10, CIFAR10_LAYOUT)
    classes = _meta_names(root / "batches.meta", b"label_names", CIFAR10_LAYOUT)
    return RawDataset("cifar10", 10, train, val, CIFAR10_MEAN, CIFAR10_STD, 32, True, classes)


def _read_cifar100(data_dir: Path | None, coarse: bool) -> RawDataset:
    name = "cifar100_coarse" if coarse else "cifar100"
    root = _need_dir(data_dir, name, CIFAR100_LAYOUT) / "cifar-100-python"
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected layout: {CIFAR100_LAYOUT}")
    key, n = (b"coarse_labels", 20) if coarse else (b"fine_labels", 100)
    train = _cifar_split([root / "train"], key, n, CIFAR100_LAYOUT)
    val = _cifar_split([root / "test"], key, n, CIFAR100_LAYOUT)
    classes = _meta_names(root / "meta", b"coarse_label_names" if coarse else b"fine_label_names",
                          CIFAR100_LAYOUT)
    return RawDataset(name, n, train, val, CIFAR100_MEAN, CIFAR100_STD, 32, True, classes)


@register_dataset("cifar100")
def read_cifar100(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """CIFAR-100 with its 100 fine labels."""
    return _read_cifar100(data_dir, coarse=False)


@register_dataset("cifar100_coarse")
def read_cifar100_coarse(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """CIFAR-100 with its 20 coarse (superclass) labels."""
    return _read_cifar100(data_dir, coarse=True)


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
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); the file is truncated or corrupt") from e
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
            raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels")
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


# --------------------------------------------------------------------------------------------------------
# image folder

DAMAGED_INSIDE = ("the file passed the checks made when the folder was read (signature, end marker, header), "
                  "so the damage is inside the image data, where --skip-bad-images cannot see it: replace or "
                  "delete the file")
FOLDER_LAYOUT = ("DIR/train/<class>/*.{jpg,jpeg,png} and DIR/val/<class>/... (or DIR/validation/), one "
                 "sub-folder per class, like torchvision's ImageFolder")


def check_image_file(path: str) -> str | None:
    """Check an encoded image without decoding its pixels (about 80 us a file): signature, end marker, and
    PIL's parse of its header.

    Returns None when the file looks whole, else what is wrong. A truncated JPEG lacks its EOI marker
    (FF D9 cannot occur inside entropy-coded data, which stuffs FF bytes); a truncated PNG lacks IEND.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError as e:
        return f"cannot read ({e})"
    if size == 0:
        return "empty file"
    if head[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
    elif head == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in tail:
            return "truncated PNG (no IEND chunk)"
    else:
        return "not a JPEG or PNG file (bad signature)"
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header is parsed
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return f"bad header ({type(e).__name__}: {e})"
    return None


def _scan_split(split_dir: Path, class_index: dict[str, int] | None) -> tuple[list[str], list[int], list[str]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{split_dir}: no class sub-folders; expected layout: {FOLDER_LAYOUT}")
    if class_index is None:
        class_index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in classes if c not in class_index]
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) {unknown[:10]} do not exist in train/ "
                        f"(train classes: {list(class_index)[:10]}...)")
    files, labels = [], []
    for c in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(split_dir / c, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
        if not found:
            raise DataError(f"{split_dir / c}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} files); "
                            f"expected layout: {FOLDER_LAYOUT}")
        files += found
        labels += [class_index[c]] * len(found)
    return files, labels, classes


def _drop_bad(files: list[str], labels: list[int], skip_bad_images: bool) -> tuple[FileSplit, list[str]]:
    # Threads: the check is a few small reads per file, bound by file-system latency, not by the GIL.
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(check_image_file, files, chunksize=256))
    bad = [f"{f}: {p}" for f, p in zip(files, problems) if p is not None]
    if bad and not skip_bad_images:
        raise DataError(f"{len(bad)} image(s) cannot be decoded (pass --skip-bad-images to skip them): "
                        + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    keep = [i for i, p in enumerate(problems) if p is None]
    return FileSplit(tuple(files[i] for i in keep), np.asarray([labels[i] for i in keep], np.int64)), bad


@register_dataset("folder")
def read_folder(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """An image folder tree (``train/`` and ``val/`` or ``validation/``, one sub-folder per class).

    Every file is checked for a whole JPEG/PNG structure; bad ones raise, or are skipped and counted with
    ``skip_bad_images`` (a warning gives the count and the files).
    """
    root = _need_dir(data_dir, "folder", FOLDER_LAYOUT)
    train_dir = root / "train"
    val_dir = next((root / v for v in ("val", "validation") if (root / v).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        missing = "train/" if not train_dir.is_dir() else "val/ (or validation/)"
        raise DataError(f"{root}: missing {missing}; expected layout: {FOLDER_LAYOUT}")
    files, labels, classes = _scan_split(train_dir, None)
    class_index = {c: i for i, c in enumerate(classes)}
    train, bad_train = _drop_bad(files, labels, skip_bad_images)
    vfiles, vlabels, _ = _scan_split(val_dir, class_index)
    val, bad_val = _drop_bad(vfiles, vlabels, skip_bad_images)
    bad = bad_train + bad_val
    if bad:
        warnings.warn(f"skipped {len(bad)} undecodable image(s): " + "; ".join(bad[:10])
                      + (" ..." if len(bad) > 10 else ""), stacklevel=3)
        for split, split_dir in ((train, train_dir), (val, val_dir)):
            empty = sorted(set(range(len(classes))) - set(split.labels.tolist()))
            if split_dir is train_dir and empty:
                raise DataError(f"{split_dir}: after skipping bad images, class folder(s) "
                                f"{[classes[i] for i in empty][:10]} hold no images")
            if len(split.files) == 0:
                raise DataError(f"{split_dir}: after skipping bad images no image is left")
    return RawDataset("folder", len(classes), train, val, IMAGENET_MEAN, IMAGENET_STD, 224, True,
                      tuple(classes), skipped=len(bad))
