"""The image-folder reader: scan the train/ and val/ class folders, check every file without decoding it.

A folder whose files a run found whole is not checked again while they stay as they were (the same paths,
sizes and modification times: one stat a file instead of three reads and a header parse), through the user
cache (`fastmotive.cache`): the check took 0.2-0.4 s for 4000 small PNGs on a CPU, and grows with the folder.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fastmotive import cache
from fastmotive.data.datasets.base import FileSplit, RawDataset, _need_dir, register_dataset
from fastmotive.errors import DataError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # published, as torchvision/timm
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

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


def _scan_split(split_dir: Path,
                class_index: dict[str, int] | None) -> tuple[list[str], list[int], list[str]]:
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


def _listing_key(files: list[str]) -> str | None:
    """The cache key of a folder's files as they are now (path, size and modification time of each, and the
    check's own code), or None when one cannot be stat'ed (the check will name it)."""
    digest = hashlib.sha256(check_image_file.__code__.co_code)   # fed a file at a time: 1.3 M files for ImageNet
    try:
        for f in files:
            st = os.stat(f)
            digest.update(f"{f}\x00{st.st_size}\x00{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()


def _split(files: list[str], labels: list[int]) -> FileSplit:
    return FileSplit(tuple(files), np.asarray(labels, np.int64))


def _drop_bad(files: list[str], labels: list[int], skip_bad_images: bool) -> tuple[FileSplit, list[str]]:
    """The split without its bad files, and the bad ones with what is wrong (raises unless `skip_bad_images`)."""
    # Threads: the check is a few small reads per file, bound by file-system latency, not by the GIL.
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(check_image_file, files, chunksize=256))
    bad = [f"{f}: {p}" for f, p in zip(files, problems) if p is not None]
    if bad and not skip_bad_images:
        raise DataError(f"{len(bad)} image(s) cannot be decoded (pass --skip-bad-images to skip them): "
                        + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    keep = [i for i, p in enumerate(problems) if p is None]
    return _split([files[i] for i in keep], [labels[i] for i in keep]), bad


@register_dataset("folder")
def read_folder(data_dir: Path | None, skip_bad_images: bool = False) -> RawDataset:
    """An image folder tree (``train/`` and ``val/`` or ``validation/``, one sub-folder per class).

    Every file is checked for a whole JPEG/PNG structure; bad ones raise, or are skipped and counted with
    ``skip_bad_images`` (a warning gives the count and the files). A folder found whole before, whose files all
    have the same paths, sizes and modification times, is not checked again (the user cache).
    """
    root = _need_dir(data_dir, "folder", FOLDER_LAYOUT)
    train_dir = root / "train"
    val_dir = next((root / v for v in ("val", "validation") if (root / v).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        missing = "train/" if not train_dir.is_dir() else "val/ (or validation/)"
        raise DataError(f"{root}: missing {missing}; expected layout: {FOLDER_LAYOUT}")
    files, labels, classes = _scan_split(train_dir, None)
    vfiles, vlabels, _ = _scan_split(val_dir, {c: i for i, c in enumerate(classes)})
    key = _listing_key(files + vfiles) if cache.cache_dir() is not None else None   # no stat per file for nothing
    if key is not None and cache.lookup("folder_checks", key) is not None:   # all whole when last checked
        train, val, bad = _split(files, labels), _split(vfiles, vlabels), []
    else:
        (train, bad_train), (val, bad_val) = (_drop_bad(files, labels, skip_bad_images),
                                              _drop_bad(vfiles, vlabels, skip_bad_images))
        bad = bad_train + bad_val
        if key is not None and not bad:
            cache.remember("folder_checks", key, {"root": str(root.resolve()), "files": len(files) + len(vfiles)})
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
