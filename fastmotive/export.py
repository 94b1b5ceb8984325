"""Export: a run's two models written as standalone safetensors files (train once, deploy twice), and read back.

Each file loads into a plain model through its family (`Family.load_exported`): timm members through
``timm.create_model(name, num_classes=N, pretrained=True, pretrained_cfg_overlay=dict(file=PATH, num_classes=N))``,
the CIFAR ResNets through ``fastmotive.families.cifar_resnet(name, num_classes=N)`` and ``load_state_dict``.
`load_exported` does either from the JSON config written beside them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import checkpoint
from .families import get_family
from .pair import MODELS, MotivatedPair
from .rundir import RunDir


def export_run(run_dir, output=None) -> list[Path]:
    """Write ``base.safetensors``, ``motivated.safetensors`` and ``config.json`` from a run's checkpoint."""
    run = RunDir(run_dir)
    args = run.read_args()
    state = checkpoint.load(run.checkpoint_path)
    kwargs = args["model_kwargs"]
    pair = MotivatedPair.from_arch(args["arch"], **kwargs)
    # Row 0 holds both models' values and buffers: all an export needs.
    pair.load_state_dict(_pair_state(state), values_only=True, source=f"checkpoint {run.checkpoint_path}")
    out = Path(output) if output else run.path / "export"
    out.mkdir(parents=True, exist_ok=True)
    config = {"arch": args["arch"], "family": pair.family.name, "run": str(run.path), "step": state["step"]}
    paths = []
    for which, name in zip(MODELS, pair.names):
        tensors = {k: v.detach().contiguous().clone() for k, v in pair.model(which).state_dict().items()}
        path = out / f"{which}.safetensors"
        save_file(tensors, path, metadata={"model": name, "arch": args["arch"], "fastmotive_model": which})
        config[which] = {"model": name, "file": path.name, "kwargs": kwargs}
        paths.append(path)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return paths + [out / "config.json"]


def _pair_state(state: dict) -> dict:
    # A trainer checkpoint keeps the pair's keys (arena, active, weights_map) at its top level, or, once it
    # stores `pair.state_dict()` whole, under "pair".
    return state.get("pair", state)


def load_exported(export_dir, which: str = "base") -> torch.nn.Module:
    """Rebuild one exported model (`which`: "base" or "motivated") as a plain nn.Module, through its family."""
    if which not in MODELS:
        raise ValueError(f"unknown model {which!r}; choices: {', '.join(MODELS)}")
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    entry = config[which]
    return get_family(config["family"]).load_exported(entry["model"], export_dir / entry["file"], entry["kwargs"])
