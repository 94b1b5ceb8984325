"""Export: a run's two models written as standalone safetensors files (train once, deploy twice), and read back.

Each file loads into a plain model through its family (`Family.load_exported`): timm members through
``timm.create_model(name, num_classes=N, pretrained=True, pretrained_cfg_overlay=dict(file=PATH, num_classes=N))``,
the CIFAR ResNets through ``fastmotive.families.cifar_resnet(name, num_classes=N)`` and ``load_state_dict``.
`load_exported` does either from the JSON config written beside them. Both files carry BatchNorm statistics
calibrated as the run evaluated its models (``--bn-calibrate``), unless asked for the raw ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from fastmotive.core.pair import MODELS
from fastmotive.families import get_family
from fastmotive.run.saved import SavedRun, open_run
from fastmotive.training.calibration import calibrate_bn
from fastmotive.training.evaluation import CALIBRATION_EPOCH


def export_run(run_dir, output=None, bn_calibrate: int | None = None) -> list[Path]:
    """Write ``base.safetensors``, ``motivated.safetensors`` (not for a single-model run) and ``config.json``
    from a run's checkpoint.

    Args:
        run_dir: the run directory. output: where to write (default: RUN_DIR/export).
        bn_calibrate: training images to calibrate BN statistics from (default: the run's own setting;
            0: the raw statistics of the checkpoint).
    """
    run = open_run(run_dir)
    calibration = _calibrate(run, run.config.bn_calibrate if bn_calibrate is None else bn_calibrate)
    out = Path(output) if output else run.path / "export"
    out.mkdir(parents=True, exist_ok=True)
    pair, arch = run.pair, run.config.arch
    config = {"arch": arch, "family": pair.family.name, "run": str(run.path), "step": run.step,
              "stopped_in_episode": run.stopped_in_episode, "bn_calibration": calibration}
    paths = []
    for which, name in zip(pair.members, pair.names):
        tensors = {k: v.detach().contiguous().cpu().clone() for k, v in pair.model(which).state_dict().items()}
        path = out / f"{which}.safetensors"
        save_file(tensors, path, metadata={"model": name, "arch": arch, "fastmotive_model": which})
        config[which] = {"model": name, "file": path.name, "kwargs": run.model_kwargs}
        paths.append(path)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return paths + [out / "config.json"]


def _calibrate(run: SavedRun, setting: int | None) -> dict:
    """Calibrate both models from the run's training split as its evaluations did; what was done, for config.json."""
    if setting == 0:
        return {"images": 0}
    train, _, info = run.open_data()
    batches, images = run.calibration(train, info, setting)
    used = {which: calibrate_bn(run.pair.model(which), batches, images)
            for which in run.pair.members}
    return {"images": max(u.images for u in used.values()), "requested": images, "split": "train",
            "augmentation": "the run's training augmentation", "calibration_epoch": CALIBRATION_EPOCH,
            "seed": run.config.seed, "layers": {which: u.layers for which, u in used.items()}}


def load_exported(export_dir, which: str = "base") -> torch.nn.Module:
    """Rebuild one exported model (`which`: "base" or "motivated") as a plain nn.Module, through its family."""
    if which not in MODELS:
        raise ValueError(f"unknown model {which!r}; choices: {', '.join(MODELS)}")
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    if which not in config:
        raise ValueError(f"{export_dir} holds no {which} model (a single-model run exports its model as base)")
    entry = config[which]
    return get_family(config["family"]).load_exported(entry["model"], export_dir / entry["file"], entry["kwargs"])
