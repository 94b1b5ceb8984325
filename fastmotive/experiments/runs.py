"""One run of an experiment: reused when finished, resumed from its checkpoint, else started; a run directory
made with other settings is refused, never silently mixed in."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from fastmotive.config import settings
from fastmotive.errors import ExperimentError
from fastmotive.run.directory import RunDir
from fastmotive.run.recipe import TrainRecipe, run_dir_for

# Keys an experiment adds to a run's args.yaml (tune-k's fold); checked like the train settings, so a fold run is
# never reused as a plain run or as another fold.
RECORDED_EXTRA = ("fold", "folds")


def experiment_folder(base, command: str) -> Path:
    """OUTPUT/NAME for an experiment: `base.output` / `base.experiment` (default COMMAND-ARCH-DATASET)."""
    name = base.experiment or f"{command}-{base.arch}-{base.dataset or 'digits'}"
    return run_dir_for(settings.replace(base, experiment=name, resume=None))


def write_settings(folder: Path, command: str, own: dict, base, drop: tuple[str, ...] = ()) -> None:
    """Record the command's settings in COMMAND.yaml: its own options, then the train settings of every run
    (less `drop`, the ones it sets per run). The runs' own args.yaml are what reuse is checked against."""
    folder.mkdir(parents=True, exist_ok=True)
    train = {k: v for k, v in settings.record(base).items() if k not in drop}
    record = {"command": command, **own, "train_settings": train}
    (folder / f"{command}.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def finished(metrics: dict, config) -> bool:
    """Whether a run's metrics show all its epochs."""
    return metrics.get("epochs", 0) >= config.epochs


def check_settings(config, record_extra: dict | None = None, this: str = "this comparison") -> None:
    """Refuse a run directory made with other settings; experiments check all their runs before training any.

    Raises:
        ExperimentError: the run directory's args.yaml differs from `config` (and `record_extra`) in a setting
            that changes training (`settings.training_names()`) or in the fold; names each difference.
    """
    run_dir = run_dir_for(settings.replace(config, resume=None))
    if not (run_dir / "args.yaml").is_file():
        return
    saved = settings.with_defaults(RunDir(run_dir).read_args())
    expected = {**settings.record(config), **dict.fromkeys(RECORDED_EXTRA), **(record_extra or {})}
    diffs = settings.differences(expected, saved, (*settings.training_names(), *RECORDED_EXTRA), this)
    if diffs:
        raise ExperimentError(f"run {run_dir} was made with other settings ({'; '.join(diffs)}). Use another "
                              f"--experiment (or --output) for these settings, or delete {run_dir}")


def run_state(config, record_extra: dict | None = None, this: str = "this comparison") -> tuple[str, dict | None]:
    """("done", metrics) | ("resume", None) | ("new", None) for the run `config` describes, after
    `check_settings`. A start killed before its first checkpoint is "new" and loses its partial logs."""
    check_settings(config, record_extra, this)
    run_dir = run_dir_for(settings.replace(config, resume=None))
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        if finished(metrics, config) or (config.max_steps and metrics.get("steps", 0) >= config.max_steps):
            return "done", metrics
    if (run_dir / "last.pt").is_file():
        return "resume", None
    for name in ("steps.csv", "summary.csv", "metrics.json", "args.yaml"):   # a start that never checkpointed
        (run_dir / name).unlink(missing_ok=True)
    return "new", None


def reevaluated(run_dir: Path, metrics: dict, config) -> dict:
    """A finished run's metrics, evaluated again if it was measured otherwise (made before BN calibration, or
    with another --bn-calibrate): metrics.json and args.yaml are updated, nothing is retrained."""
    run = RunDir(run_dir)
    saved = run.read_args()
    if "base_top1_raw" in metrics and config.bn_calibrate in (None, saved.get("bn_calibrate")):
        return metrics   # measured with the run's own count (the default, or the same --bn-calibrate)
    from fastmotive.run.saved import evaluate_run
    print(f"  re-evaluating {run_dir} with --bn-calibrate {config.bn_calibrate}")
    figures = evaluate_run(run_dir, config.bn_calibrate)
    metrics = {**metrics, **{k: v for k, v in figures.items() if k in metrics or k.endswith("_raw")
                             or k == "bn_calibration_images"}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (run_dir / "args.yaml").write_text(yaml.safe_dump({**saved, "bn_calibrate": config.bn_calibrate}, sort_keys=False))
    return metrics


def train_one(config, loaders=None, record_extra: dict | None = None, this: str = "this comparison") -> dict | None:
    """Reuse, resume or start the run in ``config.output / config.experiment``.

    Args:
        config: the run's TrainConfig; its `resume` is ignored (the run directory's state decides).
        loaders: optional function(config, device, rank, world_size) -> (train, val, DatasetInfo) opening the
            data in place of the dataset's loaders (tune-k's folds).
        record_extra: keys the run records in args.yaml besides its settings (tune-k's fold and folds).
        this: how a refusal names the command ("run has 0.05, this comparison 0.1").

    Returns:
        The run's metrics.json, or None when it was interrupted (its checkpoint is written; rerun to continue).

    Raises:
        ExperimentError: the run directory holds a run made with other settings.
    """
    config = settings.replace(config, resume=None)
    state, metrics = run_state(config, record_extra, this)
    run_dir = run_dir_for(config)
    if state == "done":
        print(f"reusing {run_dir} (finished: {metrics['epochs']} epochs, {metrics['steps']} steps)")
        return reevaluated(run_dir, metrics, config)
    if state == "resume":
        print(f"resuming {run_dir}")
        config = settings.replace(config, resume=str(run_dir))
    recipe = TrainRecipe(config, loaders=loaders, record_extra=record_extra)
    recipe.setup()
    recipe.train()
    if recipe.interrupted:
        return None
    return json.loads((recipe.run_dir / "metrics.json").read_text())
