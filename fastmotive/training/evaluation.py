"""Evaluating the models of a pair: loss, top-1 and top-5 on validation batches, with the raw BatchNorm
statistics a run carries and with statistics calibrated from training images (fastmotive/training/calibration.py).

Why calibrate: every switch up copies the base's running statistics into the motivated model's slices and a
motivated episode lasts a few batches, far too few for momentum 0.1 to re-estimate them; every switch down hands
the base statistics gathered partly in the motivated model's context. Re-estimating them from a fixed sample of
training images before evaluating, as Once-for-All and slimmable networks do, gives each model its own.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from fastmotive.core.arena import MODELS
from fastmotive.data.loaders.protocol import as_epoch_loader
from fastmotive.training.calibration import Calibration, batchnorm_layers, calibrate_bn

# A pseudo-epoch that no run reaches: its seeded order of the training split picks the calibration images, so
# they depend on the seed only and never on how far training got.
CALIBRATION_EPOCH = 1_000_000_000
# The default calibration sample: a tenth of the training split, at most 2000 images (Once-for-All's count).
# A calibration costs about as many forward passes of both models as it has images, so a tenth keeps it near a
# tenth of a digits epoch and a few percent of a CIFAR one (docs/benchmarks.md), at the accuracy of the whole
# split on digits (docs/reproduction.md).
DEFAULT_SHARE, DEFAULT_MAX = 10, 2000


def calibration_images(setting: int | None, train_images: int) -> int:
    """The images to calibrate from: the ``--bn-calibrate`` setting, or the default for the split's size."""
    if setting is not None:
        return setting
    return min(DEFAULT_MAX, max(train_images // DEFAULT_SHARE, 1))


class CalibrationBatches:
    """The training batches calibration reads: a fastmotive loader's plan for `CALIBRATION_EPOCH` (a seeded
    random sample of the training split, with the training augmentation, as Once-for-All calibrates), or a
    plain re-iterable from its start."""

    def __init__(self, train_batches):
        self.train_batches = train_batches

    def __iter__(self):
        return iter(as_epoch_loader(self.train_batches).epoch_batches(CALIBRATION_EPOCH))


@torch.no_grad()
def evaluate(model: nn.Module, batches, forward=None, dist=None) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 accuracy (%) of `model` on `batches` in eval mode; `forward` may be its
    compiled form. The model's training flag is restored.

    With `dist` (a `fastmotive.distributed.Distributed`; call on every rank, each with its own shard of the
    validation split) the loss sum, top-1 and top-5 counts and the image count are summed over ranks in one
    all-reduce (float64: counts are exact), so every rank returns the figures of the whole split."""
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    total, loss_sum, top1, top5 = 0, 0.0, 0, 0
    for images, labels in as_epoch_loader(batches).epoch_batches(0):
        logits = forward(images).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (top[:, 0] == labels).sum().item()
        top5 += (top == labels[:, None]).any(1).sum().item()
        total += len(labels)
    model.train(was_training)
    if dist is not None and dist.world_size > 1:
        sums = torch.tensor([loss_sum, top1, top5, total], dtype=torch.float64)
        loss_sum, top1, top5, total = dist.all_sum(sums, "the sharded evaluation").tolist()
    return loss_sum / max(total, 1), 100.0 * top1 / max(total, 1), 100.0 * top5 / max(total, 1)


@contextlib.contextmanager
def calibrated(model: nn.Module, batches, images: int, dist=None):
    """Within the block, `model`'s BatchNorm statistics are calibrated from `images` images of `batches` (with
    `dist`: over all ranks, see `calibrate_bn`); afterwards they are restored bitwise, so training goes on
    exactly as without calibration."""
    saved = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in batchnorm_layers(model)]
    try:
        yield calibrate_bn(model, batches, images, dist=dist)
    finally:
        with torch.no_grad():
            for bn, (mean, var) in zip(batchnorm_layers(model), saved):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)


def evaluate_pair(pair, val_batches, calibration_batches=None, images: int = 0, forward=None, dist=None) -> dict:
    """Every member evaluated (both models of a pair, the one of a single-model run): ``{model}_eval_loss/top1/
    top5`` with calibrated statistics (raw when `images` is 0) and ``..._raw`` with the statistics as they are,
    plus ``bn_calibration_images`` (0 when off or when the model has no BatchNorm).

    With `dist` (several processes; call on every rank with its shards of the validation and calibration
    batches) the figures are those of the whole split on every rank (`evaluate`, `calibrate_bn`). The raw
    figures use each rank's own running statistics: make them identical first (`Distributed.reduce_bn`)."""
    row = {}
    for name in getattr(pair, "members", MODELS):
        model = pair.model(name)
        fwd = forward[name] if forward else model
        raw = evaluate(model, val_batches, fwd, dist)
        used = Calibration(0, 0)
        if images:
            with calibrated(model, calibration_batches, images, dist) as used:
                tuned = evaluate(model, val_batches, fwd, dist) if used.layers else raw
        else:
            tuned = raw
        row.update(_figures(name, tuned), **_figures(name, raw, "_raw"), bn_calibration_images=used.images)
    return row


def _figures(name: str, figures: tuple[float, float, float], suffix: str = "") -> dict:
    loss, top1, top5 = figures
    return {f"{name}_eval_loss{suffix}": loss, f"{name}_top1{suffix}": top1, f"{name}_top5{suffix}": top5}
