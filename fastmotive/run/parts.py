"""The parts of a run built from a TrainConfig: its device, its data and its pair (or single model). The recipe
builds a new run from them; a saved run (evaluation, export, ``--initial-checkpoint RUN_DIR:base``) rebuilds the
same ones."""
from __future__ import annotations

import torch

from fastmotive.config.checks import parse_member_rates
from fastmotive.core.pair import MotivatedPair
from fastmotive.data import build_loaders, loader_options
from fastmotive.families import Arch, parse_arch


def choose_device(config) -> torch.device:
    return torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def open_data(config, device, rank: int = 0, world_size: int = 1):
    """(train batches, val batches, DatasetInfo) as the config asks, on `device`: with `world_size` processes,
    this process's shard of each (`-b` is the per-process batch). When `calibrates_from_val`, the train batches
    carry the BatchNorm calibration sample of ``config.bn_calibrate`` images (`build_loaders`)."""
    return build_loaders(config.dataset, config.data_dir, config.loader, config.batch_size, config.img_size, device,
                         config.seed, num_workers=config.workers, skip_bad_images=config.skip_bad_images,
                         rank=rank, world_size=world_size,
                         bn_calibrate=config.bn_calibrate if calibrates_from_val(config) else 0,
                         **loader_options(config))


def calibrates_from_val(config) -> bool:
    """Whether BatchNorm calibration reads training images preprocessed as validation is (``--bn-calibrate-from``;
    auto: for image folders, whose random-resized crop changes the statistics far more than an array's shift)."""
    return config.bn_calibrate_from == "val" or (config.bn_calibrate_from == "auto" and config.dataset == "folder")


def model_kwargs_for(config, info) -> dict:
    """The keyword arguments both members are built with (recorded in args.yaml, used again by export)."""
    return {"num_classes": config.num_classes or info.num_classes, "img_size": info.img_size}


def build_pair(config, model_kwargs: dict, device, *, arch: Arch | None = None,
               backend: str | None = None) -> MotivatedPair:
    """The pair (or single model) on `device`: both members with `model_kwargs` and their own --drop and
    --drop-path rates, the switch backend (`backend`: the one already resolved for `device`, else the config's)
    and BN-buffer choice; `arch` is the parsed ``config.arch`` when the caller has it."""
    arch = arch or parse_arch(config.arch)
    drop, drop_path = parse_member_rates(config.drop), parse_member_rates(config.drop_path)
    per_member = [arch.family.regularization(name, _rate(drop, i), _rate(drop_path, i))
                  for i, name in enumerate((arch.base, arch.motivated)) if name is not None]
    pair = MotivatedPair.from_arch(arch, base_kwargs=per_member[0], motivated_kwargs=per_member[-1], device=device,
                                   backend=backend or config.switch_backend, **model_kwargs)
    pair.keep_buffers = config.bn_buffers == "keep"
    return pair


def _rate(rates, member: int):
    """One member's --drop/--drop-path value: None, "auto" or its rate of (base, motivated)."""
    return rates if rates is None or rates == "auto" else rates[member]
