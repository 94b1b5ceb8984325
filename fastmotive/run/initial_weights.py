"""``--initial-checkpoint``: a run starts from trained weights (fine-tuning, the paper's transfer study, Table 3).

The weights come from an exported safetensors file (`fastmotive export`, or any file of the model's own
state-dict names) or from a run directory's checkpoint as ``RUN_DIR:base`` / ``RUN_DIR:motivated`` (its raw
values and BatchNorm statistics, with the base the next switch back would give). They load into the base model
in place, so the arena keeps every view. As timm does when a pretrained model gets another ``num_classes``, a
classifier whose shape differs is left out (it keeps its initialisation, zero with ``--head-init zero``); any
other tensor that is missing, unexpected or of another shape is an error that names it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fastmotive.errors import CheckpointError

_MODELS = ("base", "motivated")


def read_weights(spec: str) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, description) of an ``--initial-checkpoint`` value: a .safetensors file or RUN_DIR:MODEL."""
    path, _, which = str(spec).rpartition(":")
    if which in _MODELS and path:
        return _from_run(Path(path), which), f"{which} of run {path}"
    file = Path(spec)
    if file.is_dir():
        raise CheckpointError(f"--initial-checkpoint {spec} is a directory: for a run's models give "
                              f"{spec}:base or {spec}:motivated, or an exported .safetensors file")
    if not file.is_file():
        raise CheckpointError(f"--initial-checkpoint {spec}: no such file (give an exported .safetensors file, or "
                              "RUN_DIR:base / RUN_DIR:motivated)")
    if (file.parent / "args.yaml").is_file() and file.suffix == ".pt":
        raise CheckpointError(f"--initial-checkpoint {spec} is a run's checkpoint, not an exported model: give "
                              f"{file.parent}:base (or :motivated)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(file), str(file)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"--initial-checkpoint {file}: not a readable safetensors file ({exc})") from None


def _from_run(run_dir: Path, which: str) -> dict[str, torch.Tensor]:
    from fastmotive.run.saved import open_run
    run = open_run(run_dir, device="cpu")
    if which not in run.pair.members:
        raise CheckpointError(f"--initial-checkpoint {run_dir}:{which}: that run trained one model alone "
                              f"({run.config.arch}); give {run_dir}:base")
    return {k: v.detach().clone() for k, v in run.pair.model(which).state_dict().items()}


def load_initial_weights(pair, spec: str, which: str = "base") -> list[str]:
    """Copy the weights `spec` names into the pair's `which` model in place; returns the classifier tensors
    left out because their shape differs (another number of classes)."""
    weights, source = read_weights(spec)
    model = pair.model(which)
    own = model.state_dict()
    head = {f"{name}.{k}" for name, module in model.named_modules() if module is pair.classifier(which)
            for k in module.state_dict()}
    dropped = sorted(k for k in head if k in weights and weights[k].shape != own[k].shape)
    problems = [f"{k} is missing" for k in own if k not in weights and k not in head] + \
               [f"{k} is not a tensor of {type(model).__name__}" for k in weights if k not in own] + \
               [f"{k} has shape {tuple(weights[k].shape)}, the model's is {tuple(own[k].shape)}"
                for k in own if k in weights and k not in dropped and weights[k].shape != own[k].shape]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(f"--initial-checkpoint {source} does not fit the {which} model "
                              f"({pair.names[0 if which == 'base' else 1] if pair.names else which}): {shown}")
    with torch.no_grad():
        for k, tensor in own.items():
            if k in weights and k not in dropped:
                tensor.copy_(weights[k])
    pair.arena.check_bound()
    return dropped
