"""Writers of the standard dataset layouts, for tests and the loader benchmark (no download is possible).

Each writer produces exactly the files the real datasets ship: CIFAR python pickles (protocol 2, numpy
arrays under byte-string keys, as the originals), idx files, and an image-folder tree of JPEG/PNG files.
Pixels are smooth random patterns plus noise, so JPEG sizes and decode times resemble photographs'.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def random_images(n: int, channels: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, channels, size, size]: per-image gradients and blobs plus a little noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.random((n, channels, 4), dtype=np.float32)
    img = (a[..., 0, None, None] * 255 * xx + a[..., 1, None, None] * 255 * yy
           + 60 * np.sin(2 * np.pi * (a[..., 2, None, None] * 3 * xx + a[..., 3, None, None] * 3 * yy)))
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with 5 train batches of ``n_train`` images each, a test batch and meta."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        images = random_images(n, 3, 32, rng).reshape(n, 3072)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        _dump(d / name, {b"batch_label": name.encode(), b"labels": labels, b"data": images,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]})
    _dump(d / "batches.meta", {b"num_cases_per_batch": n_train, b"num_vis": 3072,
                               b"label_names": [f"class{i}".encode() for i in range(10)]})
    return d


def write_cifar100(root, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels (fine // 5 = coarse)."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        _dump(d / name, {b"filenames": [f"{i}.png".encode() for i in range(n)], b"batch_label": name.encode(),
                         b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
                         b"data": random_images(n, 3, 32, rng).reshape(n, 3072)})
    _dump(d / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                       b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    return d


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file: magic (0, 0, ubyte = 8, ndim), big-endian dimensions, then the data."""
    array = np.ascontiguousarray(array, np.uint8)
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(directory, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    """MNIST-style ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``directory``."""
    rng = np.random.default_rng(seed)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", random_images(n, 1, 28, rng)[:, 0]),
                          (f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))):
            data = idx_bytes(arr)
            if gz:
                with gzip.open(d / (stem + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (d / stem).write_bytes(data)
    return d


def write_image_folder(root, classes: int = 3, per_class: int = 4, val_per_class: int = 2,
                       size: tuple[int, int] = (48, 40), png_every: int = 0, val_name: str = "val",
                       seed: int = 0, quality: int = 90) -> Path:
    """``root/{train,<val_name>}/class<k>/<i>.jpg`` (every ``png_every``-th file a PNG); size is (w, h)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    w, h = size
    for split, n in (("train", per_class), (val_name, val_per_class)):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            side = max(w, h)
            for i, arr in enumerate(random_images(n, 3, side, rng)):
                im = Image.fromarray(arr.transpose(1, 2, 0)[:h, :w])
                if png_every and i % png_every == png_every - 1:
                    im.save(d / f"{i:05d}.png")
                else:
                    im.save(d / f"{i:05d}.jpg", quality=quality)
    return root

