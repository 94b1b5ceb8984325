"""The CIFAR-10 and CIFAR-100 readers: python pickles, unpickled allowing only what CIFAR files hold."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fastmotive.data.datasets.base import ArraySplit, RawDataset, _check_labels, _need_dir, register_dataset
from fastmotive.errors import DataError

# Published per-channel statistics of the training sets (torchvision / timm conventions).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

CIFAR10_LAYOUT = ("DIR/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch, batches.meta}: python "
                  "pickles of dicts with b'data' (uint8 [N, 3072], rows RRR..GGG..BBB of 32x32) and "
                  "b'labels'")
CIFAR100_LAYOUT = ("DIR/cifar-100-python/{train, test, meta}: python pickles of dicts with b'data' "
                   "(uint8 [N, 3072]), b'fine_labels' and b'coarse_labels'")


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR files hold (dicts, lists, bytes and numpy arrays): loading a file from
    ``--data-dir`` must not run arbitrary code."""

    _ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
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
        raise DataError(f"{path}: the pickle references {e}, which CIFAR files never hold; refusing to load "
                        f"it (unpickling can run code); expected layout: {layout}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError) as e:
        raise DataError(f"{path}: truncated or not a CIFAR python pickle ({type(e).__name__}: {e}); "
                        f"expected layout: {layout}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}; expected layout: "
                        f"{layout}")
    return obj


def _cifar_split(paths: list[Path], label_key: bytes, num_classes: int, layout: str) -> ArraySplit:
    images, labels = [], []
    for path in paths:
        d = _load_pickle(path, layout)
        missing = [k.decode() for k in (b"data", label_key) if k not in d]
        if missing:   # name keys with their type: str keys look the same as the bytes keys CIFAR uses
            raise DataError(f"{path}: pickle lacks key(s) {missing} (has {sorted(map(repr, d))}; CIFAR's keys are "
                            f"bytes); expected layout: {layout}")
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
