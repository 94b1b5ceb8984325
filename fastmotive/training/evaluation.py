"""Evaluating the models of a pair: loss, top-1 and top-5 on validation batches, each model once, with the
BatchNorm statistics it ships with: calibrated from training images (fastmotive/training/calibration.py) where a
switch has made them stale, its own running statistics elsewhere (`stale_members`).

Why calibrate: every switch up copies the base's running statistics into the motivated model's slices and a
motivated episode lasts a few batches, far too few for momentum 0.1 to re-estimate them; every switch down hands
the base statistics gathered partly in the motivated model's context. Re-estimating them from a fixed sample of
training images before evaluating, as Once-for-All and slimmable networks do, gives each model its own. A model
whose statistics are its own (a single model, the base long after its last episode, the models of identity
growth) keeps them: re-estimating them measured no better (docs/reproduction.md).
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from fastmotive.core.arena import MODELS
from fastmotive.data.build import CALIBRATION_STREAM, calibration_images  # noqa: F401  (re-exported)
from fastmotive.data.loaders.protocol import as_epoch_loader
from fastmotive.training.calibration import Calibration, batchnorm_layers, calibrate_bn

# A pseudo-epoch that no run reaches: without a calibration sample (a loader not built by `build_loaders`), its
# seeded order of the training split picks the calibration images, so they depend on the seed only.
CALIBRATION_EPOCH = CALIBRATION_STREAM
# The base's statistics count as its own again once the motivated context's share of them, (1 - momentum)^n
# after n base batches, is below this.
STALE_SHARE = 0.01
CALIBRATE_CHOICES = ("stale", "all")


class CalibrationBatches:
    """The batches calibration reads: the train loader's ``calibration_sample`` when it has one (a seeded random
    sample of the training split, preprocessed as validation is; `fastmotive.data.build_loaders`), else its
    training batches of `CALIBRATION_EPOCH` (training augmentation), or a plain re-iterable from its start."""

    def __init__(self, train_batches):
        self.train_batches = train_batches
        self.sample = getattr(train_batches, "calibration_sample", None)

    @property
    def preprocessing(self) -> str:
        return "validation" if self.sample is not None else "training augmentation"

    def __iter__(self):
        if self.sample is not None:
            return iter(self.sample.epoch_batches(0))
        return iter(as_epoch_loader(self.train_batches).epoch_batches(CALIBRATION_EPOCH))


def stale_members(pair, since_motivated: int | None, which: str, growth_init: str) -> tuple[str, ...]:
    """The members whose BatchNorm statistics are re-estimated before an evaluation and at export.

    ``which="all"``: every member. ``"stale"``: with the paper's growth (``growth_init="paper"``), the motivated
    model always (a switch up overwrites its mapped statistics with the base's, gathered on another function; or
    with ``--bn-buffers keep`` they lag behind the weights the base trained in its slices) and the base when the
    switches copy statistics and the motivated model trained within the last n batches, n the batches after which
    that context's share of the base's statistics falls below 1 % (44 at BatchNorm's momentum 0.1).
    `since_motivated`: batches the base trained since then (None: never; 0 when unknown). With ``identity``
    growth the motivated model computes the base's function plus what its grown layers add, so the copied
    statistics fit it, and they scored as well as a re-estimate or better (docs/reproduction.md): none. A single
    model: none.
    """
    if which == "all":
        return tuple(pair.members)
    if len(pair.members) == 1 or growth_init == "identity":
        return ()
    recent = since_motivated is not None and since_motivated < _base_window(pair.model("base"))
    return ("base", "motivated") if recent and not getattr(pair, "keep_buffers", False) else ("motivated",)


def _base_window(model: nn.Module) -> float:
    """Base batches until a switch's statistics fall below `STALE_SHARE` of the running averages."""
    momenta = {bn.momentum for bn in batchnorm_layers(model)}
    if not momenta:
        return 0
    if None in momenta or min(momenta) <= 0:   # cumulative averages (or frozen ones) never forget
        return math.inf
    slowest = min(momenta)
    return 1 if slowest >= 1 else math.log(STALE_SHARE) / math.log(1 - slowest)


@torch.no_grad()
def evaluate(model: nn.Module, batches, forward=None, dist=None) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 accuracy (%) of `model` on `batches` in eval mode; `forward` may be its
    compiled form. The model's training flag is restored.

    With `dist` (a `fastmotive.distributed.Distributed`; call on every rank, each with its own shard of the
    validation split) the loss sum, top-1 and top-5 counts and the image count are summed over ranks in one
    all-reduce (float64: counts are exact), so every rank returns the figures of the whole split."""
    return evaluate_models({"model": (model, forward)}, batches, dist)["model"]


@torch.no_grad()
def evaluate_models(models: dict[str, tuple[nn.Module, object]], batches,
                    dist=None) -> dict[str, tuple[float, float, float]]:
    """`evaluate` for several models ({name: (model, forward or None)}) in one pass over `batches`: each batch
    is read, decoded and moved once for all of them (one all-reduce for all with `dist`)."""
    was_training = {name: model.training for name, (model, _) in models.items()}
    for model, _ in models.values():
        model.eval()
    sums, total = None, 0   # per model: loss sum, top-1 and top-5 hits, on the device: one read at the end
    for images, labels in as_epoch_loader(batches).epoch_batches(0):
        batch = torch.stack([_batch_sums((model if forward is None else forward)(images).float(), labels)
                             for model, forward in models.values()])
        sums = batch if sums is None else sums.add_(batch)
        total += len(labels)
    for name, (model, _) in models.items():
        model.train(was_training[name])
    sums = sums.cpu() if sums is not None else torch.zeros(len(models), 3, dtype=torch.float64)
    sums = torch.cat([sums, torch.full((len(models), 1), float(total), dtype=torch.float64)], dim=1)
    if dist is not None and dist.world_size > 1:
        sums = dist.all_sum(sums, "the sharded evaluation")
    figures = {}
    for name, (loss_sum, top1, top5, count) in zip(models, sums.tolist()):
        count = max(count, 1)
        figures[name] = (loss_sum / count, 100.0 * top1 / count, 100.0 * top5 / count)
    return figures


def _batch_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Loss sum, top-1 and top-5 hits of one batch (float64)."""
    hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
    return torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(), hits[:, 0].sum().double(),
                        hits.any(1).sum().double()])


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


def evaluate_pair(pair, val_batches, calibration_batches=None, images: int = 0, forward=None, dist=None, *,
                  calibrate=None, raw: bool = True, on_evaluated=None) -> dict:
    """Every member evaluated once, with the statistics it ships with: calibrated from `images` images of
    `calibration_batches` when it is one of `calibrate` (default: every member) and `images` > 0, else its own.
    The members are evaluated together, in one pass over `val_batches` (`evaluate_models`).

    The row: ``{model}_eval_loss/top1/top5``, ``{model}_bn_calibrated`` (1 or 0), ``bn_calibration_images`` and
    ``calibration_s`` (the time calibration took); with `raw`, ``..._raw`` with the statistics as they are too (a
    second pass, over the calibrated members only).
    `on_evaluated(name, model, figures)` is called while the model holds the statistics it was evaluated with
    (they are restored afterwards).

    With `dist` (several processes; call on every rank with its shards of the validation and calibration
    batches) the figures are those of the whole split on every rank (`evaluate`, `calibrate_bn`). The raw
    figures use each rank's own running statistics: make them identical first (`Distributed.reduce_bn`)."""
    members = getattr(pair, "members", MODELS)
    calibrate = members if calibrate is None else calibrate
    models = {name: (pair.model(name), forward[name] if forward else None) for name in members}
    with contextlib.ExitStack() as shipped:
        start = time.perf_counter()
        used = {name: shipped.enter_context(calibrated(models[name][0], calibration_batches, images, dist))
                if images and name in calibrate else Calibration(0, 0) for name in members}   # entering calibrates
        calibration_s = time.perf_counter() - start
        figures = evaluate_models(models, val_batches, dist)
        if on_evaluated is not None:
            for name in members:
                on_evaluated(name, models[name][0], figures[name])
    stale = [name for name in members if used[name].layers]
    raw_figures = evaluate_models({n: models[n] for n in stale}, val_batches, dist) if raw and stale else {}
    row = {"bn_calibration_images": max(u.images for u in used.values()), "calibration_s": calibration_s}
    for name in members:
        row.update(_figures(name, figures[name]), **{f"{name}_bn_calibrated": int(used[name].layers > 0)})
        if raw:
            row.update(_figures(name, raw_figures.get(name, figures[name]), "_raw"))
    return row


def _figures(name: str, figures: tuple[float, float, float], suffix: str = "") -> dict:
    loss, top1, top5 = figures
    return {f"{name}_eval_loss{suffix}": loss, f"{name}_top1{suffix}": top1, f"{name}_top5{suffix}": top5}
