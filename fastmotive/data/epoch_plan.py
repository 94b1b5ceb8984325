"""Epoch plans: the sample order and the augmentation parameters of one epoch, drawn from (seed, epoch).

Every loader consumes the same plan, so `tensor`, `torch` and `dali` visit the same samples in the same
order with the same crops and flips (array data gives the same pixels up to float rounding), and a run
resumed at batch k of epoch e sees exactly the batches it would have seen. Nothing random happens inside
a loader: DALI's and torch's own generators are never used.

Training augmentation (issue 4):
- arrays: random crop with ``PAD`` = 4 pixels of zero padding (torchvision ``RandomCrop(size, padding=4)``),
  then horizontal flip with probability 1/2 when enabled;
- files: random-resized crop with scale (0.08, 1) and aspect ratio (3/4, 4/3), drawn in coordinates
  relative to the image (so all loaders cut the same box whatever the decoder), then flip.
Validation: fixed order, no augmentation; files are resized (shorter side to size / 0.875) and centre-cropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAD = 4                            # pixels of zero padding around array images for the random crop
RRC_SCALE = (0.08, 1.0)            # random-resized crop: area fraction (torchvision / timm default)
RRC_RATIO = (3 / 4, 4 / 3)         # random-resized crop: aspect ratio (width / height)
VAL_CROP_PCT = 0.875               # validation of folders: centre crop of size / 0.875 (timm crop_pct)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch: ``index`` [n] samples in batch order; per sample ``dx``/``dy`` shifts of the crop window
    of array images (-PAD..PAD, 0 = no shift; pixels outside the image are 0), ``flip``, and ``box`` [n, 4] float32 relative
    (x0, y0, w, h) for file data (None for validation of files, which centre-crops)."""
    index: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    flip: np.ndarray
    box: np.ndarray | None
    batch_size: int

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def batch(self, b: int) -> slice:
        """The plan rows of batch ``b``."""
        return slice(b * self.batch_size, min(len(self.index), (b + 1) * self.batch_size))


def num_batches(n: int, batch_size: int, train: bool) -> int:
    """Training drops the last partial batch (so it never yields a batch of 1); validation keeps it."""
    return n // batch_size if train else math.ceil(n / batch_size)


def train_plan(n: int, batch_size: int, seed: int, epoch: int, flip: bool, files: bool) -> EpochPlan:
    """Shuffled order and augmentation of training epoch ``epoch``; a pure function of its arguments."""
    rng = np.random.Generator(np.random.PCG64([seed, epoch]))
    keep = num_batches(n, batch_size, True) * batch_size
    index = rng.permutation(n)[:keep].astype(np.int64)
    # Drawn for every sample whether used or not, so the stream does not depend on the other options.
    d = rng.integers(-PAD, PAD + 1, size=(2, keep))
    flips = rng.random(keep) < 0.5
    if not flip:
        flips[:] = False
    box = None
    if files:
        area = rng.uniform(*RRC_SCALE, size=keep)
        ratio = np.exp(rng.uniform(math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1]), size=keep))
        w = np.minimum(np.sqrt(area * ratio), 1.0)
        h = np.minimum(np.sqrt(area / ratio), 1.0)
        u = rng.random((2, keep))
        box = np.stack([u[0] * (1 - w), u[1] * (1 - h), w, h], axis=1).astype(np.float32)
        # Relative boxes must stay inside [0, 1] after float32 rounding (DALI rejects 1 + 1e-7).
        box[:, 2:] = np.minimum(box[:, 2:], 1 - box[:, :2])
    return EpochPlan(index, d[0], d[1], flips, box, batch_size)


def val_plan(n: int, batch_size: int) -> EpochPlan:
    """Validation: identity order, centre crop, no flip, last partial batch kept."""
    centre = np.zeros(n, np.int64)
    return EpochPlan(np.arange(n, dtype=np.int64), centre, centre, np.zeros(n, bool), None, batch_size)


def plan_for(n: int, batch_size: int, train: bool, seed: int, epoch: int, flip: bool, files: bool) -> EpochPlan:
    return train_plan(n, batch_size, seed, epoch, flip, files) if train else val_plan(n, batch_size)


def check_start(start_batch: int, total: int) -> None:
    if not 0 <= start_batch <= total:
        raise ValueError(f"start_batch={start_batch} is outside [0, {total}] (batches per epoch: {total})")


def epoch_counter_iter(loader):
    """``iter(loader)``: the batches of ``loader.epoch``; the counter advances after each full pass."""
    epoch = loader.epoch
    yield from loader.epoch_batches(epoch)
    loader.epoch = epoch + 1
