"""Epoch plans: the sample order and the augmentation parameters of one epoch, drawn from (seed, epoch).

Every loader consumes the same plan, so `tensor`, `torch` and `dali` visit the same samples in the same
order with the same crops and flips (array data gives the same pixels up to float rounding), and a run
resumed at batch k of epoch e sees exactly the batches it would have seen. Nothing random happens inside
a loader: DALI's and torch's own generators are never used.

Training augmentation (issue 4; options of issue 12):
- arrays: random crop with ``PAD`` = 4 pixels of zero padding (torchvision ``RandomCrop(size, padding=4)``),
  then horizontal flip with probability ``flip`` (``--hflip``; 0.5 by default);
- files: random-resized crop with area fraction in ``scale`` and aspect ratio in ``ratio`` (``--scale``,
  ``--ratio``), drawn in coordinates relative to the image (so all loaders cut the same box whatever the
  decoder), then flip;
- ``repeats`` >= 2 (``--aug-repeats``): timm's repeated augmentation, each sampled image ``repeats`` times in a
  row, each copy with its own crop and flip (and device augmentation), the epoch kept at the dataset's length.
Validation: fixed order, no augmentation; files are resized (shorter side to size / 0.875) and centre-cropped.

Distributed (`Sampling` with ``world_size`` > 1): a training epoch is planned for the global batch
``batch_size * world_size`` and rank r reads rows ``[r b, (r+1) b)`` of each global batch (`EpochPlan.shard`),
so the ranks together see exactly the single-process batches at the global batch size; validation gives rank r
the contiguous chunk ``[r n // w, (r+1) n // w)`` of the set, each sample once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAD = 4                            # pixels of zero padding around array images for the random crop
RRC_SCALE = (0.08, 1.0)            # random-resized crop: area fraction (torchvision / timm default)
RRC_RATIO = (3 / 4, 4 / 3)         # random-resized crop: aspect ratio (width / height)
VAL_CROP_PCT = 0.875               # validation of folders: centre crop of size / 0.875 (timm crop_pct)


def val_resize(size: int) -> int:
    """The shorter side a validation image is resized to before its centre crop of `size`: timm's
    ``floor(size / crop_pct)`` (36 for 32 px, 256 for 224)."""
    return math.floor(size / VAL_CROP_PCT)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch: ``index`` [n] samples in batch order; per sample ``dx``/``dy`` shifts of the crop window
    of array images (-PAD..PAD, 0 = no shift; pixels outside the image are 0), ``flip``, ``box`` [n, 4] float32
    relative (x0, y0, w, h) for file data (None for validation of files, which centre-crops), and ``position``,
    the sample's place in the whole (unsharded) epoch, which seeds per-sample augmentation."""
    index: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    flip: np.ndarray
    box: np.ndarray | None
    batch_size: int
    position: np.ndarray

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def batch(self, b: int) -> slice:
        """The plan rows of batch ``b``."""
        return slice(b * self.batch_size, min(len(self.index), (b + 1) * self.batch_size))

    def shard(self, rank: int, world_size: int) -> EpochPlan:
        """Rank ``rank``'s part of a training plan: rows ``[rank b, (rank+1) b)`` of every batch, where
        ``b = batch_size // world_size``, as a plan of batch size b and the same number of batches."""
        if self.batch_size % world_size or len(self.index) % self.batch_size:
            raise ValueError(f"cannot shard a plan of batch {self.batch_size} and {len(self.index)} rows over "
                             f"{world_size} ranks")
        b = self.batch_size // world_size
        rows = ((np.arange(len(self)) * self.batch_size)[:, None] + rank * b + np.arange(b)).ravel()
        return EpochPlan(self.index[rows], self.dx[rows], self.dy[rows], self.flip[rows],
                         None if self.box is None else self.box[rows], b, self.position[rows])


def flip_probability(flip: bool | float | None) -> float:
    """``flip`` as a probability: True is timm's 0.5, False / None 0, a number itself."""
    if flip is True:
        return 0.5
    return float(flip or 0.0)


def train_plan(n: int, batch_size: int, seed: int, epoch: int, flip: bool | float, files: bool,
               scale: tuple[float, float] = RRC_SCALE, ratio: tuple[float, float] = RRC_RATIO,
               repeats: int = 0) -> EpochPlan:
    """Shuffled order and augmentation of training epoch ``epoch``; a pure function of its arguments."""
    rng = np.random.Generator(np.random.PCG64([seed, epoch]))
    keep = (n // batch_size) * batch_size
    order = rng.permutation(n)
    if repeats > 1:  # timm's RepeatAugSampler: ceil(n / repeats) images, each `repeats` times in a row
        order = np.repeat(order[:math.ceil(n / repeats)], repeats)
    index = order[:keep].astype(np.int64)
    # Drawn for every sample whether used or not, so the stream does not depend on the other options.
    d = rng.integers(-PAD, PAD + 1, size=(2, keep))
    flips = rng.random(keep) < flip_probability(flip)
    box = _rrc_boxes(rng, keep, scale, ratio) if files else None
    return EpochPlan(index, d[0], d[1], flips, box, batch_size, np.arange(keep, dtype=np.int64))


def _rrc_boxes(rng: np.random.Generator, k: int, scale, ratio) -> np.ndarray:
    """Random-resized-crop boxes, relative (x0, y0, w, h): area uniform in `scale`, ratio log-uniform."""
    area = rng.uniform(*scale, size=k)
    r = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=k))
    w = np.minimum(np.sqrt(area * r), 1.0)
    h = np.minimum(np.sqrt(area / r), 1.0)
    u = rng.random((2, k))
    box = np.stack([u[0] * (1 - w), u[1] * (1 - h), w, h], axis=1).astype(np.float32)
    # Relative boxes must stay inside [0, 1] after float32 rounding (DALI rejects 1 + 1e-7).
    box[:, 2:] = np.minimum(box[:, 2:], 1 - box[:, :2])
    return box


def val_plan(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> EpochPlan:
    """Validation: rank ``rank``'s contiguous chunk in identity order, no augmentation, last partial batch kept."""
    index = np.arange(rank * n // world_size, (rank + 1) * n // world_size, dtype=np.int64)
    centre = np.zeros(len(index), np.int64)
    return EpochPlan(index, centre, centre, np.zeros(len(index), bool), None, batch_size, index)


@dataclass(frozen=True)
class Sampling:
    """How a loader plans its epochs: a split of ``n`` samples, its batch size per rank, and the options above.
    ``len()`` is the number of batches per epoch (of global batches when sharded)."""
    n: int
    batch_size: int
    train: bool
    seed: int = 0
    flip: float = 0.0
    files: bool = False
    scale: tuple[float, float] = RRC_SCALE
    ratio: tuple[float, float] = RRC_RATIO
    repeats: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank={self.rank} is outside [0, world_size={self.world_size})")

    def __len__(self) -> int:
        if self.train:  # the last partial global batch is dropped, so a training batch is never of size 1
            return self.n // (self.batch_size * self.world_size)
        lo, hi = self.rank * self.n // self.world_size, (self.rank + 1) * self.n // self.world_size
        return math.ceil((hi - lo) / self.batch_size)

    def epoch(self, epoch: int) -> EpochPlan:
        """This rank's plan of ``epoch``."""
        if not self.train:
            return val_plan(self.n, self.batch_size, self.rank, self.world_size)
        plan = train_plan(self.n, self.batch_size * self.world_size, self.seed, epoch, self.flip, self.files,
                          self.scale, self.ratio, self.repeats)
        return plan if self.world_size == 1 else plan.shard(self.rank, self.world_size)
