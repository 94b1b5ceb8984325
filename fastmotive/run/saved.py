"""A finished or interrupted run reopened for evaluation and export: its settings, its data, and its pair as the
checkpoint left it, with the base that the next switch back would give."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastmotive.config import settings
from fastmotive.core.pair import MotivatedPair, wants_channels_last
from fastmotive.data.build import calibration_images
from fastmotive.errors import CheckpointError
from fastmotive.run import checkpoint
from fastmotive.run.directory import RunDir
from fastmotive.run.parts import build_pair, choose_device, open_data


@dataclass
class SavedRun:
    path: Path
    config: object           # settings.TrainConfig
    model_kwargs: dict
    pair: MotivatedPair
    step: int
    stopped_in_episode: bool   # the checkpoint was taken while the motivated model trained
    since_motivated: int | None   # base batches since the motivated model last trained (None: it never did)

    def open_data(self, bn_calibrate: int | None = None):
        """(train batches, val batches, DatasetInfo) of the run, on the pair's device; the calibration sample holds
        `bn_calibrate` images (default: the run's --bn-calibrate)."""
        config = self.config if bn_calibrate is None else settings.replace(self.config, bn_calibrate=bn_calibrate)
        return open_data(config, self.pair.device)

    def calibrated_members(self, which: str | None = None) -> tuple[str, ...]:
        """The members whose statistics the run's evaluations calibrate (`stale_members`; `which`: stale or all,
        default the run's --bn-calibrate-models)."""
        from fastmotive.training.evaluation import stale_members
        return stale_members(self.pair, self.since_motivated, which or self.config.bn_calibrate_models,
                             self.config.growth_init)

    def calibration(self, train, info, images: int | None = None):
        """(calibration batches, image count) as the run's evaluations calibrated: `images` (default: the run's
        --bn-calibrate) from the training split `train`."""
        from fastmotive.training.evaluation import CalibrationBatches
        return CalibrationBatches(train), calibration_images(
            self.config.bn_calibrate if images is None else images, info.train_size)

    def validation(self, val, batches: int | None = None):
        """The first `batches` validation batches of `val` (default: the run's --val-batches budget; 0 or no
        budget: the whole split), as the run's evaluations read them."""
        budget = self.config.val_batches if batches is None else batches
        if not budget:
            return val
        from fastmotive.data import FirstBatches
        return FirstBatches(val, budget)


def open_run(run_dir, device=None) -> SavedRun:
    """Reopen `run_dir`'s checkpoint (values and buffers only: what evaluation and export need), in the memory
    format the run trained and evaluated with (`--channels-last`), so a re-evaluation or an export's calibration
    rounds as the run's own evaluations did.

    A checkpoint taken inside a motivated episode holds the base's latest weights in the motivated model's
    slices, not in the base's own columns; the pair is switched back so that `pair.base` is that model.
    """
    path = Path(run_dir)
    if not (path / "args.yaml").is_file():
        raise CheckpointError(f"{path} is not a fastmotive run directory (no args.yaml)")
    run = RunDir(path)
    saved = run.read_args()
    config = settings.from_record(saved, source=str(path / "args.yaml"))
    if device is not None:
        config = settings.replace(config, device=str(device))
    state = checkpoint.load(run.checkpoint_path)
    pair = build_pair(config, saved["model_kwargs"], choose_device(config))
    pair.load_state_dict(state, values_only=True, source=f"checkpoint {run.checkpoint_path}")
    in_episode = pair.active == "motivated"
    pair.switch_to("base")
    pair.set_channels_last(wants_channels_last(config.channels_last, pair))
    return SavedRun(path, config, saved["model_kwargs"], pair, state["step"], in_episode, _since_motivated(state))


def _since_motivated(state: dict) -> int | None:
    """From the checkpoint's totals; 0 (recent) for a checkpoint that predates the record."""
    from fastmotive.training.state import TrainState
    totals = state.get("totals", {})
    return TrainState.from_state_dict(totals).steps_since_motivated() if "last_motivated_step" in totals else 0


def evaluate_run(run_dir, images: int | None = None, device=None, val_batches: int | None = None,
                 which: str | None = None) -> dict:
    """The models of a saved run on its validation split, each with the statistics it ships with (calibrated from
    `images` training images, default the run's --bn-calibrate, when `calibrated_members(which)` names it) and
    raw; written to the run directory's eval.json as well. `val_batches`: the first N validation batches
    (default: the run's --val-batches budget; 0: the whole split); ``val_images`` says how many images that was."""
    import json

    from fastmotive.training.evaluation import evaluate_pair
    run = open_run(run_dir, device)
    train, val, info = run.open_data(images)
    calibration, images = run.calibration(train, info, images)
    val = run.validation(val, val_batches)
    result = {"run": str(run.path), "step": run.step, "stopped_in_episode": run.stopped_in_episode,
              "dataset": info.name, "val_size": info.val_size,
              "val_images": min(info.val_size, len(val) * run.config.batch_size), "models": list(run.pair.members),
              "calibration_preprocessing": calibration.preprocessing,
              **evaluate_pair(run.pair, val, calibration, images, calibrate=run.calibrated_members(which))}
    (run.path / "eval.json").write_text(json.dumps(result, indent=1))
    return result
