"""Train once, deploy twice: write both models of a run as standalone safetensors files.

Each file loads into a plain model: timm members through ``timm.create_model(name, num_classes=N,
pretrained=True, pretrained_cfg_overlay=dict(file=PATH, num_classes=N))``, the CIFAR ResNets through
``fastmotive.families.cifar_resnet(name, num_classes=N)`` and ``load_state_dict``. `load_exported`
does either from the JSON config written beside them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import checkpoint
from .families import get_family, parse_arch
from .pair import MODELS, MotivatedPair
from .rundir import RunDir


def export_run(run_dir, output=None) -> list[Path]:
    """Write ``base.safetensors``, ``motivated.safetensors`` and ``config.json`` from a run's checkpoint."""
    run = RunDir(run_dir)
    args = run.read_args()
    state = checkpoint.load(run.checkpoint_path)
    kwargs = args["model_kwargs"]
    pair = MotivatedPair.from_arch(args["arch"], **kwargs)
    checkpoint.check_pair(state, pair, run.checkpoint_path)
    with torch.no_grad():   # row 0 holds both models' values and buffers: all an export needs
        pair.arena.data[0].copy_(state["arena"][0])
    out = Path(output) if output else run.path / "export"
    out.mkdir(parents=True, exist_ok=True)
    family, *names = parse_arch(args["arch"])
    config = {"arch": args["arch"], "family": family.name, "run": str(run.path), "step": state["step"]}
    paths = []
    for which, name in zip(MODELS, names):
        tensors = {k: v.detach().contiguous().clone() for k, v in pair.model(which).state_dict().items()}
        path = out / f"{which}.safetensors"
        save_file(tensors, path, metadata={"model": name, "arch": args["arch"], "fastmotive_model": which})
        config[which] = {"model": name, "file": path.name, "kwargs": kwargs}
        paths.append(path)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return paths + [out / "config.json"]


def load_exported(export_dir, which: str = "base") -> torch.nn.Module:
    """Rebuild one exported model as a plain nn.Module (timm's loader for timm members)."""
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    entry = config[which]
    path, kwargs = export_dir / entry["file"], dict(entry["kwargs"])
    if config["family"] == "cifar_resnet":
        model = get_family("cifar_resnet").build(entry["model"], **kwargs)
        model.load_state_dict(load_file(path))
        return model
    import timm
    num_classes = kwargs.pop("num_classes")
    overlay = {"file": str(path), "num_classes": num_classes}   # num_classes: keep the trained head
    return timm.create_model(entry["model"], num_classes=num_classes, pretrained=True,
                             pretrained_cfg_overlay=overlay, **kwargs)
