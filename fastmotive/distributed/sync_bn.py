"""--sync-bn: BatchNorm layers synchronised across processes, still inside the arena (fastmotive.distributed)."""
from __future__ import annotations

import torch.distributed as dist

from fastmotive.errors import ConfigError
from fastmotive.training.calibration import batchnorm_layers

__all__ = ["convert_sync_bn"]


def convert_sync_bn(pair, group) -> int:
    """--sync-bn: every BatchNorm of every member becomes a SyncBatchNorm (timm's converter: BatchNormAct2d
    keeps its activation) holding the SAME parameter and buffer tensors, so they stay in the arena and the
    switch moves them as before. Returns the layers converted. Call on every rank before the Trainer is built.

    Raises:
        ConfigError: the pair is not on CUDA (torch's SyncBatchNorm raises on CPU inputs).
    """
    if pair.device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm only synchronises GPU tensors (it raises "
                          "on CPU inputs). On the CPU leave it off: each process keeps its own statistics and "
                          "--dist-bn reduce (the default) averages them before evaluation and checkpoints")
    converted = _to_sync_bn(pair)
    if group.enabled and group.solo_group is None:
        # Calibration must not synchronise (ranks calibrate from different numbers of images): every rank joins
        # the creation of every one-rank group, in the same order, and keeps its own.
        solos = [dist.new_group([r]) for r in range(group.world_size)]
        group.solo_group = solos[group.rank]
    return converted


def _to_sync_bn(pair) -> int:
    """The conversion of `convert_sync_bn`, without the device check."""
    from timm.layers import convert_sync_batchnorm
    before = sum(len(batchnorm_layers(pair.model(m))) for m in getattr(pair, "members", ("base", "motivated")))
    for name in getattr(pair, "members", ("base", "motivated")):
        model = pair.model(name)
        if convert_sync_batchnorm(model) is not model:
            raise ConfigError(f"the {name} model is itself a BatchNorm layer; --sync-bn converts the layers inside "
                              "a model")
    pair.arena.check_bound()   # the same tensors: still arena views
    return before
