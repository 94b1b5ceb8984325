"""Export: a run's models written as folders people can ship (train once, deploy twice), and read back.

``RUN/export/base/`` and ``RUN/export/motivated/`` (one folder per member of ``pair.members``; a single-model run
has ``base/`` only) each hold timm's hub layout: ``config.json`` (``architecture``, ``num_classes``,
``pretrained_cfg`` describing the preprocessing the run's validation used, ``model_args``, and fastmotive's own
record under ``fastmotive``), ``model.safetensors`` (trained weights, BatchNorm statistics calibrated as the run
evaluated its models unless asked for the raw ones), ``README.md`` (a model card from the run's records) and,
with ``onnx=True``, ``model.onnx`` + ``onnx.json``. ``RUN/export/config.json`` indexes the folders and records
the run. timm members load with ``timm.create_model("local-dir:FOLDER", pretrained=True)``; every member (the
CIFAR ResNets too, which timm does not have) loads with `load_exported`, which also reads the layout written
before per-model folders (``base.safetensors``, ``motivated.safetensors`` and one ``config.json``).
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import torch
from safetensors.torch import save_file

from fastmotive.core.pair import MODELS
from fastmotive.errors import ConfigError
from fastmotive.families import get_family
from fastmotive.run.directory import RunDir
from fastmotive.run.model_card import write_model_card
from fastmotive.run.saved import SavedRun, open_run
from fastmotive.training.calibration import calibrate_bn
from fastmotive.training.evaluation import CALIBRATION_EPOCH

FORMAT = "fastmotive-export/2"     # the per-model folders; the earlier layout has no "format" key
WEIGHTS = "model.safetensors"


def export_run(run_dir, output=None, bn_calibrate: int | None = None, onnx: bool = False,
               best: bool = False) -> list[Path]:
    """Write one folder per model (see the module docstring) from a run's checkpoint; the paths written.

    Args:
        run_dir: the run directory. output: where to write (default: RUN_DIR/export).
        bn_calibrate: training images to calibrate BN statistics from, for the models the run's evaluations
            calibrate (`SavedRun.calibrated_members`; default: the run's own setting; 0: the raw statistics).
        onnx: also write ``model.onnx`` per model, checked against PyTorch on the validation images.
        best: each model's best evaluation instead of the last checkpoint (``best_{model}.safetensors``, with
            the statistics it was evaluated with).

    Raises:
        ConfigError: `output` lies inside another run's directory, or holds another run's export; `best` and
            a model has no best file yet.
    """
    run = open_run(run_dir)
    out = Path(output) if output else run.path / "export"
    _check_output(out, run.path)
    train, val, info = run.open_data(bn_calibrate)
    calibration = _load_best(run) if best else \
        _calibrate(run, train, info, run.config.bn_calibrate if bn_calibrate is None else bn_calibrate)
    out.mkdir(parents=True, exist_ok=True)
    pair, arch = run.pair, run.config.arch
    index = {"format": FORMAT, "arch": arch, "family": pair.family.name, "run": str(run.path.resolve()),
             "step": run.step, "stopped_in_episode": run.stopped_in_episode, "bn_calibration": calibration,
             "models": {}}
    paths = []
    for which, name in zip(pair.members, pair.names):
        folder = out / which
        folder.mkdir(exist_ok=True)
        model = pair.model(which)
        config = hub_config(run, which, name, info, calibration)
        tensors = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
        save_file(tensors, folder / WEIGHTS, metadata={"model": name, "arch": arch, "fastmotive_model": which})
        written = [folder / WEIGHTS]
        for stale in ("model.onnx", "onnx.json"):   # a re-export without --onnx leaves no outdated graph
            (folder / stale).unlink(missing_ok=True)
        if onnx:
            from fastmotive.run.onnx_export import export_onnx   # imports onnx: only when asked
            config["fastmotive"]["onnx"] = export_onnx(model, name, folder, run.validation(val))
            written += [folder / "model.onnx", folder / "onnx.json"]
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(config, indent=1))
        written.append(config_path)
        written.append(write_model_card(folder, run, which, config, info))
        _readable_like(config_path, written)
        index["models"][which] = which
        paths += written
    for old in ("base.safetensors", "motivated.safetensors"):   # this run's own export in the earlier layout
        (out / old).unlink(missing_ok=True)
    (out / "config.json").write_text(json.dumps(index, indent=1))
    return paths + [out / "config.json"]


def hub_config(run: SavedRun, which: str, name: str, info, calibration: dict) -> dict:
    """timm's ``config.json`` for one member: architecture, classes, the preprocessing, model args; fastmotive's
    record under ``fastmotive``."""
    pair = run.pair
    family = pair.family
    model = pair.model(which)
    kwargs = family._model_kwargs(dict(run.model_kwargs))   # what the member was built with (img_size if sized)
    model_args = {k: v for k, v in kwargs.items() if k != "num_classes"}
    partner = [n for m, n in zip(pair.members, pair.names) if m != which]
    return {"architecture": name, "num_classes": info.num_classes,
            "num_features": getattr(model, "num_features", None),
            "pretrained_cfg": pretrained_cfg(info, run.config, family.sized_input), "model_args": model_args,
            "fastmotive": {"model": which, "partner": partner[0] if partner else None, "arch": run.config.arch,
                           "family": family.name, "kwargs": run.model_kwargs, "file": WEIGHTS,
                           "timm_loadable": type(model).__module__.startswith("timm."),
                           "run": str(run.path.resolve()), "step": run.step,
                           "stopped_in_episode": run.stopped_in_episode, "bn_calibration": calibration,
                           "preprocessing": preprocessing(info, run.config)}}


def pretrained_cfg(info, config, fixed_size: bool = False) -> dict:
    """timm's preprocessing keys for what the run's validation loader does (`fastmotive.data.build_loaders`).

    Arrays (digits, CIFAR, MNIST family): the stored images, no crop, resized (bilinear) only when the run's
    ``--img-size`` differs from the stored side, then normalized: timm's eval transform with ``crop_pct`` 1.0
    applied to the stored images (as PIL RGB) is that. Image folders: shorter side to timm's
    ``floor(S / 0.875)`` (`val_resize`), bilinear, centre crop S: ``crop_pct`` 0.875."""
    from fastmotive.data.loaders.epoch_plan import VAL_CROP_PCT
    size = info.img_size
    crop_pct = VAL_CROP_PCT if config.dataset == "folder" else 1.0
    return {"input_size": [3, size, size], "fixed_input_size": fixed_size, "interpolation": "bilinear",
            "crop_pct": crop_pct, "crop_mode": "center", "mean": list(info.mean), "std": list(info.std),
            "num_classes": info.num_classes}


def preprocessing(info, config) -> str:
    """In words: what goes into timm's pipeline for the figures of the model card to hold."""
    if config.dataset == "folder":
        return (f"image files (RGB); timm's eval transform resizes the shorter side and centre-crops "
                f"{info.img_size}x{info.img_size}, as fastmotive's validation")
    return (f"the {info.name} images as fastmotive stores them (uint8, RGB: grayscale repeated to 3 channels); "
            f"timm's eval transform resizes them to {info.img_size}x{info.img_size} (nothing to do when that is "
            f"the stored side), no crop, and normalizes with the run's mean and std")


def _check_output(out: Path, run_path: Path) -> None:
    """Refuse an output inside another run's directory or over another run's export."""
    mine = run_path.resolve()
    target = out.resolve()
    for folder in (target, *target.parents):
        if folder == mine:
            break
        if RunDir(folder).holds_run():
            raise ConfigError(f"export --output {out}: {folder} is another run's directory; export {run_path} "
                              "into its own export/ or a folder outside any run")
    for config in (target / "config.json", *(target / m / "config.json" for m in MODELS)):
        if not config.is_file():
            continue
        try:
            saved = json.loads(config.read_text())
        except (OSError, ValueError):
            raise ConfigError(f"export --output {out}: {config} is not an export's config.json; "
                              "choose an empty folder") from None
        owner = saved.get("run") or saved.get("fastmotive", {}).get("run")
        if owner is None or Path(owner).resolve() != mine:
            raise ConfigError(f"export --output {out}: it holds the export of another run ({owner or 'unknown'}); "
                              "choose another folder or remove that export")


def _readable_like(reference: Path, paths: list[Path]) -> None:
    """Give every written file the mode of `reference` (safetensors' writer may create 0600 files)."""
    mode = stat.S_IMODE(os.stat(reference).st_mode)
    for path in paths:
        if path.is_file():
            os.chmod(path, mode)


def _calibrate(run: SavedRun, train, info, setting: int | None) -> dict:
    """Calibrate the models the run's evaluations calibrate, as they did; what was done, for config.json."""
    models = run.calibrated_members()
    if setting == 0 or not models:
        return {"images": 0, "models": [], "statistics": "each model's own running statistics"}
    batches, images = run.calibration(train, info, setting)
    used = {which: calibrate_bn(run.pair.model(which), batches, images) for which in models}
    return {"images": max(u.images for u in used.values()), "requested": images, "split": "train",
            "models": list(models), "preprocessing": batches.preprocessing, "calibration_stream": CALIBRATION_EPOCH,
            "seed": run.config.seed, "layers": {which: u.layers for which, u in used.items()}}


def _load_best(run: SavedRun) -> dict:
    """Load each member's best evaluated model (weights and the statistics it was evaluated with) into the pair;
    what was loaded, for config.json."""
    from safetensors.torch import load_file
    directory, best = RunDir(run.path), {}
    for which in run.pair.members:
        path = directory.best_path(which)
        if not path.is_file():
            raise ConfigError(f"export --best: {path} does not exist (the run has not evaluated its {which} model "
                              "yet); export the last checkpoint without --best")
        run.pair.model(which).load_state_dict(load_file(path, device=str(run.pair.device)))   # in place: arena
        best[which] = directory.read_best(which)
    return {"images": 0, "models": [], "best": best,
            "statistics": "as each model's best evaluation had them (best_{model}.safetensors)"}


def load_exported(export_dir, which: str | None = None) -> torch.nn.Module:
    """Rebuild one exported model as a plain nn.Module, through its family (timm members and CIFAR ResNets alike).

    `export_dir` is a model's folder (``RUN/export/motivated``; `which` then unused), or the export folder with
    `which` ("base", the default, or "motivated"), in the per-model layout or the earlier one
    (``base.safetensors`` + one ``config.json``)."""
    if which is not None and which not in MODELS:
        raise ValueError(f"unknown model {which!r}; choices: {', '.join(MODELS)}")
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    if "architecture" in config:   # one model's folder
        own = config["fastmotive"]
        return get_family(own["family"]).load_exported(config["architecture"], export_dir / own["file"],
                                                       own["kwargs"])
    which = which or "base"
    if config.get("format") == FORMAT:
        if which not in config["models"]:
            raise ValueError(f"{export_dir} holds no {which} model (a single-model run exports its model as base)")
        return load_exported(export_dir / config["models"][which])
    if which not in config:   # the earlier layout
        raise ValueError(f"{export_dir} holds no {which} model (a single-model run exports its model as base)")
    entry = config[which]
    return get_family(config["family"]).load_exported(entry["model"], export_dir / entry["file"], entry["kwargs"])
