"""Optional log sinks beside the run directory's CSV files: TensorBoard event files and Weights & Biases, as timm's
``--log-tensorboard`` / ``--log-wandb``. The trainer calls one object, `RunLoggers`, which costs nothing when both
are off.

TensorBoard (RUN_DIR/tensorboard), per step: ``train/loss_base`` or ``train/loss_motivated`` (the loss, tagged by
the model that produced it), ``train/lr``, ``train/active`` (0 base, 1 motivated); per epoch (x = epoch):
``epoch/train_loss``, ``epoch/motivated_fraction``, ``eval/{base,motivated}_{loss,top1,top5}`` (calibrated) and
``eval/..._raw``. Weights & Biases gets the same names, per step at the global step and per epoch with an
``epoch`` key (`define_metric` plots ``eval/*`` and ``epoch/*`` against it); it runs offline unless WANDB_MODE
says otherwise (timm's ``wandb.init(config=args)``), writing into RUN_DIR/wandb.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from fastmotive.errors import ConfigError

EVAL_FIGURES = (("eval_loss", "loss"), ("top1", "top1"), ("top5", "top5"))


def check_available(*, wandb: bool) -> None:
    """Raise ConfigError, saying what to install, when a sink asked for cannot import (TensorBoard is a
    dependency; Weights & Biases an optional extra). The recipe calls it before any file is written."""
    if wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--log-wandb needs Weights & Biases: pip install 'fastmotive[wandb]' (or pip install "
                          "wandb)")


def epoch_scalars(row: dict) -> dict[str, float]:
    """An epoch row's figures under the sinks' names (models and figures absent from the row, or not measured at
    that epoch, are left out)."""
    out = {f"epoch/{k}": row[k] for k in ("train_loss", "motivated_fraction", "lr", "train_images_per_sec")
           if row.get(k) is not None}
    for model in ("base", "motivated"):
        for key, name in EVAL_FIGURES:
            for suffix in ("", "_raw"):
                if row.get(f"{model}_{key}{suffix}") is not None:
                    out[f"eval/{model}_{name}{suffix}"] = row[f"{model}_{key}{suffix}"]
    return out


def step_scalars(record: dict) -> dict[str, float]:
    """A step record's figures: the loss tagged by the active model, the lr, the active model as 0/1."""
    return {f"train/loss_{record['active']}": record["loss"], "train/lr": record["lr"],
            "train/active": float(record["active"] == "motivated")}


class _TensorBoard:
    def __init__(self, run_dir: Path, resume_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:   # torch's writer needs the tensorboard package
            raise ConfigError(f"--log-tensorboard needs the tensorboard package ({exc}): pip install tensorboard"
                              ) from None
        # purge_step: after a resume from step T, events an earlier session logged at T or later are hidden
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step or None)

    def step(self, record: dict) -> None:
        for tag, value in step_scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])

    def epoch(self, row: dict, last_step: int) -> None:
        for tag, value in epoch_scalars(row).items():
            self.writer.add_scalar(tag, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: dict):
        check_available(wandb=True)
        import wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fastmotive"), name=run_dir.name,
                              dir=str(run_dir), config=config, mode=os.environ.get("WANDB_MODE", "offline"))
        self.run.define_metric("epoch")
        for pattern in ("eval/*", "epoch/*"):
            self.run.define_metric(pattern, step_metric="epoch")

    def step(self, record: dict) -> None:
        self.run.log(step_scalars(record), step=record["step"])

    def epoch(self, row: dict, last_step: int) -> None:
        # at the epoch's last global step, so wandb's step stays monotonic; plotted against "epoch"
        self.run.log({"epoch": row["epoch"], **epoch_scalars(row)}, step=max(last_step, 0))

    def close(self) -> None:
        self.run.finish()


class RunLoggers:
    """The optional sinks of one run. `open` them once, then `step(record)` per batch, `epoch(row)` per epoch
    and `close()` at the end; with both sinks off every call returns at once."""

    def __init__(self, sinks: list):
        self.sinks = sinks
        self._last_step = -1

    @classmethod
    def open(cls, run_dir: str | os.PathLike, config_record: dict, *, tensorboard: bool = False,
             wandb: bool = False, resume_step: int = 0) -> RunLoggers:
        """The sinks asked for, writing into `run_dir`.

        Args:
            run_dir: the run directory (TensorBoard writes RUN_DIR/tensorboard, wandb RUN_DIR/wandb).
            config_record: the run's settings (`settings.record(config)`): wandb's run config.
            tensorboard, wandb: which sinks (``config.log_tensorboard``, ``config.log_wandb``).
            resume_step: the global step a resumed run continues from (TensorBoard hides the earlier session's
                events from this step on, which the resumed run logs again).

        Raises:
            ConfigError: a sink's package is not installed (the message says what to install).
        """
        run_dir = Path(run_dir)
        sinks = []
        if tensorboard or wandb:
            run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            sinks.append(_TensorBoard(run_dir, resume_step))
        if wandb:
            sinks.append(_Wandb(run_dir, config_record))
        return cls(sinks)

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def step(self, record: dict) -> None:
        """One trained batch: a steps.csv record (step, epoch, batch, active, loss, lr, images, switched)."""
        if not self.sinks:
            return
        self._last_step = record["step"]
        for sink in self.sinks:
            sink.step(record)

    def epoch(self, row: dict) -> None:
        """One epoch's summary row (the trainer's row, before summary.csv's reordering)."""
        for sink in self.sinks:
            sink.epoch(row, self._last_step)

    def close(self) -> None:
        """Flush and close every sink (safe to call twice)."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()
