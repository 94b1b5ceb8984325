"""Exact BatchNorm calibration: re-estimate a model's running mean and variance from a few training images."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

# (n, sum, sum of squares) of one BN layer's input: a 0-d count and two [C] per-channel tensors, float64.
__all__ = ["Calibration", "calibrate_bn", "calibrate_pair"]

Moments = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Calibration:
    layers: int      # BatchNorm layers re-estimated (0: the model has none)
    images: int      # images used


def calibrate_bn(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], images: int, *,
                 dist=None) -> Calibration:
    """Re-estimate every BatchNorm layer's running mean and variance of `model` from the first `images`
    images of `batches` (the last batch is cut so exactly `images` are used, or all if there are fewer).

    Every ``_BatchNorm`` subclass with running statistics counts (BatchNorm1d/2d/3d, SyncBatchNorm,
    timm's BatchNormAct2d). Forward passes only, under ``torch.no_grad()``: the model is in eval mode
    (Dropout, DropPath off) except the BN layers, which normalise with their batch's statistics as in
    training. Each call's batch mean and unbiased variance, which BN computes anyway (read from its
    running buffers with momentum 1, so calibration costs the forward passes and nothing more), are pooled
    per channel in float64 over the N images, and the exact pooled mean and unbiased variance are written in
    place. The mean equals the ``momentum=None`` cumulative average; the variance
    does not (that averages per-batch variances). A layer called twice per forward pools both calls; a
    layer never reached keeps its statistics and is not counted.

    Nothing else changes: parameters, grads, other buffers (``num_batches_tracked`` included), training
    flags and momenta are as before, and every tensor keeps its identity and storage (arena views stay
    bound). Without BN layers nothing runs and ``batches`` is not read. On an exception the model is
    left as it was.

    With `dist` (a `fastmotive.distributed.Distributed` of several processes; call on every rank) `images` is
    the count over all ranks: rank r uses the first ``dist.share(images)`` images of its own `batches` (the
    shares add up to `images`), the per-layer float64 moments are summed across ranks in one all-reduce, and
    every rank writes the same statistics: those a single process would compute over the union of the ranks'
    images. SyncBatchNorm layers do not synchronise meanwhile (they normalise each rank's batch alone, with
    ``dist.solo_group``), since ranks may run different numbers of forwards.

    Args:
        model: the model; its inputs are moved to the device of its BN buffers.
        batches: (images, targets) pairs, e.g. a training DataLoader; targets are ignored.
        images: how many images to use (about 2000 is typical); with `dist`, over all ranks.
        dist: the process group context, or None for this process alone.
    Returns:
        How many BN layers were re-estimated and how many images were used (over all ranks).
    Raises:
        ValueError: if `images` <= 0, or `batches` yields no image for a model with BN layers (on no rank).
    """
    if images <= 0:
        raise ValueError(f"images must be positive, got {images}")
    layers = batchnorm_layers(model)
    if not layers:
        return Calibration(layers=0, images=0)
    several = dist is not None and dist.world_size > 1
    solo = getattr(dist, "solo_group", None) if several else None
    moments, used = _accumulate_moments(model, layers, batches, dist.share(images) if several else images, solo)
    if several:
        moments, used = _sum_over_ranks(moments, used, dist)
    if used == 0:
        raise ValueError("batches yielded no images: BatchNorm statistics cannot be re-estimated")
    reached = _write_statistics(layers, moments)
    return Calibration(layers=reached, images=used)


def calibrate_pair(pair, which: str, batches: Iterable[tuple[Tensor, Tensor]], images: int, *,
                   dist=None) -> Calibration:
    """`calibrate_bn` on ``pair.model(which)`` ("base" or "motivated"); the other model is untouched.

    The next switch into `which` overwrites its mapped BN buffers again: calibrate after the last switch.
    """
    return calibrate_bn(pair.model(which), batches, images, dist=dist)


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BN layers of `model` that keep running statistics, in module order."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
            and m.running_mean is not None and m.running_var is not None]


def _accumulate_moments(model: nn.Module, layers: list[_BatchNorm], batches: Iterable[tuple[Tensor, Tensor]],
                       images: int, solo_group=None) -> tuple[list[Moments], int]:
    """Run the calibration forwards and return each layer's input moments and the number of images used.

    The model comes back exactly as it was (flags, momenta, buffers, SyncBatchNorm process groups); summing the
    moments over processes before `_write_statistics` gives the statistics of all processes' images together.
    `solo_group`: a process group of this rank alone, given to SyncBatchNorm layers meanwhile.
    """
    device = layers[0].running_mean.device
    moments = [(torch.zeros((), dtype=torch.float64, device=device),
                torch.zeros(bn.num_features, dtype=torch.float64, device=device),
                torch.zeros(bn.num_features, dtype=torch.float64, device=device)) for bn in layers]
    hooks = [bn.register_forward_hook(_moment_hook(acc)) for bn, acc in zip(layers, moments)]
    flags = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in layers]
    saved = [{name: buf.clone() for name, buf in bn.named_buffers(recurse=False)} for bn in layers]
    groups = {bn: bn.process_group for bn in layers if isinstance(bn, nn.SyncBatchNorm)}
    try:
        _enter_calibration_mode(model, layers)
        if solo_group is not None:
            for bn in groups:
                bn.process_group = solo_group
        used = _run_forwards(model, batches, images, device) if images > 0 else 0
    finally:
        for hook in hooks:
            hook.remove()
        for bn, group in groups.items():
            bn.process_group = group
        _restore(layers, flags, momenta, saved)
    return moments, used


def _sum_over_ranks(moments: list[Moments], used: int, dist) -> tuple[list[Moments], int]:
    """Every layer's (n, sum, sum of squares) and the image count summed over ranks, in one all-reduce of a
    float64 vector (counts are exact in float64 up to 2^53)."""
    parts = [t.reshape(-1) for acc in moments for t in acc]
    flat = torch.cat([*parts, torch.tensor([float(used)], dtype=torch.float64, device=parts[0].device)])
    flat = dist.all_sum(flat, "the BatchNorm calibration's moments")
    pieces = iter(flat.split([p.numel() for p in parts] + [1]))
    summed = [(next(pieces).reshape(()), next(pieces), next(pieces)) for _ in moments]
    return summed, int(next(pieces).item())


def _write_statistics(layers: list[_BatchNorm], moments: list[Moments]) -> int:
    """Write mean and unbiased variance into each layer's buffers in place; return how many were reached."""
    written = 0
    with torch.no_grad():
        for bn, (n, total, squares) in zip(layers, moments):
            if n == 0:
                continue
            mean = total / n
            # float64 keeps the cancellation in sumsq - n*mean^2 harmless; clamp its last-bit negatives
            var = ((squares - n * mean * mean) / (n - 1).clamp(min=1)).clamp(min=0)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            written += 1
    return written


def _moment_hook(acc: Moments):
    """After each BN call, add that batch's moments, read from the buffers BN just set to the batch's mean and
    unbiased variance (momentum 1), as float64 sums: n, sum x and sum x^2 per channel."""
    n, total, squares = acc

    def hook(module: nn.Module, args: tuple, output) -> None:
        x = args[0]
        count = x.numel() // x.shape[1]
        mean, var = module.running_mean.to(torch.float64), module.running_var.to(torch.float64)
        n.add_(count)
        total.add_(mean * count)
        squares.add_(var * (count - 1) + mean * mean * count)
    return hook


def _enter_calibration_mode(model: nn.Module, layers: list[_BatchNorm]) -> None:
    model.eval()
    with torch.no_grad():
        for bn in layers:
            bn.training = True   # the layer only: a BN's children (timm's drop/act) stay in eval
            bn.momentum = 1.0    # each call leaves its batch's statistics in the buffers (restored afterwards)
            bn.running_mean.zero_()   # momentum 1 still multiplies the old values by 0: no NaN may linger
            bn.running_var.fill_(1.0)


def _run_forwards(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], images: int,
                  device: torch.device) -> int:
    used = 0
    with torch.no_grad():
        for batch in batches:
            x = batch[0][: images - used]
            if len(x) == 0:
                continue
            model(x.to(device, non_blocking=True))
            used += len(x)
            if used == images:   # stop before asking the loader for another batch
                break
    return used


def _restore(layers: list[_BatchNorm], flags: dict[nn.Module, bool], momenta: list, saved: list[dict]) -> None:
    for module, training in flags.items():
        module.training = training
    with torch.no_grad():
        for bn, momentum, buffers in zip(layers, momenta, saved):
            bn.momentum = momentum
            for name, value in buffers.items():
                bn.get_buffer(name).copy_(value)   # in place: the buffers may be arena views
