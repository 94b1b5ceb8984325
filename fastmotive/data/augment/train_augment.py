"""The training batch augmentation of timm's recipes, on the device, around any fastmotive training loader.

    augment = TrainAugment.from_config(config, num_classes)      # None when nothing is on
    train = augment.wrap(train) if augment else train             # same interface as the loader
    for images, targets in train.epoch_batches(epoch, start_batch): ...

Per batch, in timm's order:
1. auto-augmentation (``--aa``): the batch's pixel levels in [0, 255] (the tensor loader's uint8 batch, or the
   loader's normalization inverted and rounded to the integer levels it started from), each image with its
   own RandAugment / AutoAugment draws (`batch_augment.BatchAugment`), normalized again. Skipped when the
   loader already applied the same policy per sample (the `torch` loader built with ``aa``);
2. random erasing (``--reprob``, ``--remode``, ``--recount``; `random_erasing`), on the normalized batch;
3. Mixup / CutMix: timm's own ``Mixup`` (alphas, ``cutmix_minmax``, ``prob``, ``switch_prob``, ``mode``,
   ``label_smoothing=smoothing``), giving float targets [B, num_classes] that sum to 1.
Steps 2 and 3 work in place on the batch (every loader yields a fresh tensor per batch).

Targets: int64 labels when neither Mixup nor CutMix is configured, else float soft targets in every epoch;
from ``mixup_off_epoch`` on they are the smoothed one-hot targets timm's ``Mixup`` gives with mixing disabled
(what timm's train.py trains on), so the loss function never changes within a run (`soft_targets`).

Determinism: every draw comes from generators seeded by (seed, epoch, batch index, stream) (`rng`); timm's
``Mixup`` draws from numpy's global generator, seeded per batch and restored around the call. So a batch
depends only on its epoch and index: ``epoch_batches(e, start_batch=k)`` is bitwise the tail of
``epoch_batches(e)``, and the caller's random streams are untouched.

Distributed: draws for per-image augmentation (auto-augmentation, erasing) are made for the global batch of
``batch_size * world_size`` images and each rank takes its rows, so the ranks together augment exactly as
one process at the global batch. Mixup / CutMix pair image i with image B-1-i of the batch it is given, the
rank's own (timm's behaviour under DDP), seeded from (seed, epoch, batch, rank): mixed batches differ from
the single-process ones, and the pairs never cross ranks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastmotive.data.augment.auto_augment import BatchAugment
from fastmotive.data.augment.policy import fill_color
from fastmotive.data.augment.random_erasing import MODES, draw_boxes, erase
from fastmotive.data.loaders.protocol import EpochLoader
from fastmotive.data.rng import (AUTO_AUGMENT, ERASING, ERASING_NOISE, MIXING, derive_seed,
                                 global_rngs_seeded, numpy_generator, sample_seeds, torch_generator)
from fastmotive.errors import ConfigError


@dataclass(frozen=True)
class TrainAugment:
    """The batch augmentation settings (the ``augmentation`` flags of `fastmotive.config.settings`).

    Args:
        num_classes: width of the soft targets.
        aa: ``--aa`` spec or None. reprob, remode, recount: random erasing. mixup, cutmix, cutmix_minmax,
        mixup_prob, mixup_switch_prob, mixup_mode, mixup_off_epoch, smoothing: timm's ``Mixup`` (epochs from
        ``mixup_off_epoch`` on are not mixed; 0: never off). seed: the run's seed.
    """
    num_classes: int
    aa: str | None = None
    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1
    mixup: float = 0.0
    cutmix: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    mixup_off_epoch: int = 0
    smoothing: float = 0.0
    seed: int = 0

    @classmethod
    def from_config(cls, config, num_classes: int) -> TrainAugment | None:
        """The settings of a `TrainConfig`; None when none of them is on (the loader is used as is)."""
        augment = cls(num_classes, config.aa, config.reprob, config.remode, config.recount, config.mixup,
                      config.cutmix, None if config.cutmix_minmax is None else tuple(config.cutmix_minmax),
                      config.mixup_prob, config.mixup_switch_prob, config.mixup_mode, config.mixup_off_epoch,
                      config.smoothing, config.seed)
        return augment if augment.active else None

    @property
    def mixing(self) -> bool:
        """Mixup or CutMix configured (timm's ``mixup_active``)."""
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None

    @property
    def soft_targets(self) -> bool:
        """Batches carry float targets [B, num_classes] (soft-target losses), else int64 labels."""
        return self.mixing

    @property
    def active(self) -> bool:
        return self.aa is not None or self.reprob > 0 or self.mixing

    def wrap(self, loader) -> AugmentedLoader:
        """`loader` (a fastmotive training loader) with this augmentation applied to its batches."""
        return AugmentedLoader(loader, self)


def loader_options(config) -> dict:
    """The `build_loaders` keyword arguments of a `TrainConfig`'s augmentation flags (``--hflip``,
    ``--no-flip``, ``--scale``, ``--ratio``, ``--aug-repeats``, ``--aa`` for the torch loader's workers)."""
    return {"flip": 0.0 if config.no_flip else config.hflip, "scale": tuple(config.scale),
            "ratio": tuple(config.ratio), "aug_repeats": config.aug_repeats, "aa": config.aa}


class AugmentedLoader(EpochLoader):
    """A training loader whose batches go through a `TrainAugment`; the same interface as the loader
    (``len``, ``epoch_batches``, ``iter``, ``epoch``). ``loader`` is the unwrapped one (un-mixed batches, e.g.
    for BatchNorm calibration)."""

    def __init__(self, loader, augment: TrainAugment):
        if not getattr(loader, "train", True):
            raise ConfigError("the training augmentation wraps a training loader, not a validation one")
        if augment.remode not in MODES or augment.recount < 1:
            raise ConfigError(f"--remode {augment.remode!r} --recount {augment.recount}: expected a mode among "
                              f"{', '.join(MODES)} and a count >= 1")
        if augment.mixing and loader.batch_size % 2:
            raise ConfigError(f"--mixup/--cutmix pair image i with image B-1-i: --batch-size must be even per "
                              f"process, got {loader.batch_size}")
        self.loader, self.augment, self.epoch = loader, augment, 0
        self.batch_size, self.seed = loader.batch_size, augment.seed
        self.rank, self.world_size = getattr(loader, "rank", 0), getattr(loader, "world_size", 1)
        # The normalization as the tensor loader computes it (x * scale + bias), and its inverse.
        std = torch.tensor(loader.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(loader.mean, dtype=torch.float32).view(1, 3, 1, 1)
        scale = 1 / (std * 255)
        self._scale, self._bias = scale.to(loader.device), (-mean * 255 * scale).to(loader.device)
        self._std255, self._mean255 = (std * 255).to(loader.device), (mean * 255).to(loader.device)
        on_device = augment.aa is not None and getattr(loader, "aa", None) != augment.aa
        self._aa = BatchAugment(augment.aa, fill_color(loader.mean)) if on_device else None
        # uint8 batches straight from the loader where it offers them: no normalization to invert
        self._pixels = getattr(loader, "pixel_batches", None) if on_device else None
        self._mixup = self._make_mixup() if augment.mixing else None

    def _make_mixup(self):
        from timm.data import Mixup
        a = self.augment
        return Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, cutmix_minmax=a.cutmix_minmax, prob=a.mixup_prob,
                     switch_prob=a.mixup_switch_prob, mode=a.mixup_mode, label_smoothing=a.smoothing,
                     num_classes=a.num_classes)

    @property
    def soft_targets(self) -> bool:
        return self.augment.soft_targets

    @property
    def device(self) -> torch.device:
        return self.loader.device

    def __len__(self) -> int:
        return len(self.loader)


    def epoch_batches(self, epoch: int, start_batch: int = 0):
        """Augmented batches ``start_batch..`` of ``epoch``: images float32 [B, 3, S, S], targets int64 [B] or
        float32 [B, num_classes] (`soft_targets`)."""
        batches = (self._pixels or self.loader.epoch_batches)(epoch, start_batch=start_batch)
        return (self.augment_batch(x, y, epoch, b) for b, (x, y) in enumerate(batches, start_batch))

    def augment_batch(self, images: torch.Tensor, labels: torch.Tensor, epoch: int, batch: int):
        """One batch of the loader (normalized float images, or uint8 pixels, and int64 labels) augmented; a
        pure function of its inputs and (seed, epoch, batch, rank)."""
        lo, hi = self.rank * len(images), (self.rank + 1) * len(images)   # this rank's rows of the global batch
        global_n = len(images) * self.world_size
        if self._aa is not None:
            images = self._auto_augment(images, epoch, batch, global_n, lo, hi)
        if self.augment.reprob > 0:
            images = self._erase(images, epoch, batch, global_n, lo, hi)
        if self._mixup is not None:
            return self._mix(images, labels, epoch, batch)
        return images, labels

    def _auto_augment(self, x, epoch, batch, global_n, lo, hi):
        draws = self._aa.draw(global_n, torch_generator(self.seed, epoch, batch, AUTO_AUGMENT)).rows(lo, hi)
        if x.dtype == torch.uint8:
            levels = x.float()
        else:  # the loader's pixel levels back: its normalization inverted, rounded to the integers it read
            levels = torch.addcmul(self._mean255, x, self._std255).round_().clamp_(0, 255)
        return self._aa.apply_(levels, draws).mul_(self._scale).add_(self._bias)

    def _erase(self, x, epoch, batch, global_n, lo, hi):
        a = self.augment
        rng = numpy_generator(self.seed, epoch, batch, ERASING)
        boxes = draw_boxes(rng, global_n, tuple(x.shape[-2:]), a.reprob, a.recount).rows(lo, hi)
        base = derive_seed(self.seed, epoch, batch, ERASING_NOISE)
        seeds = sample_seeds(base, np.arange(lo, hi))  # one fill stream per image of the global batch
        return erase(x, boxes, a.remode, lambda row: torch.Generator(x.device).manual_seed(int(seeds[row])))

    def _mix(self, x, labels, epoch, batch):
        a, mixup = self.augment, self._mixup
        mixup.mixup_enabled = not (a.mixup_off_epoch and epoch >= a.mixup_off_epoch)
        with global_rngs_seeded(derive_seed(self.seed, epoch, batch, MIXING, self.rank)):
            return mixup(x, labels)
