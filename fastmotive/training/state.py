"""Where a run stands and what it has done so far, kept as running totals, and the checkpoint built from them.

The totals make every per-step report O(1): the progress bar, the log lines and each epoch's summary row read
counters instead of re-scanning the recorded steps. A checkpoint holds what resume needs (the pair, the
position, the condition and optimizers, the RNG, these totals), never the step history: that is in the run
directory's steps.csv, which resume re-reads.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from fastmotive.errors import CheckpointError
from fastmotive.run import checkpoint

# Keys a checkpoint holds besides the pair's own (`MotivatedPair.state_dict()`).
CHECKPOINT_KEYS = ("step", "position", "totals", "condition", "optimizers", "optimizer", "rng")


@dataclass
class TrainState:
    """Position and running totals; updated once per batch in O(1)."""

    step: int = 0                       # batches trained so far, by either model (the global step)
    epoch: int = 0                      # (epoch, batch): the next batch to train
    batch: int = 0
    motivated_steps: int = 0            # over the whole run
    switches: int = 0
    images: int = 0
    epoch_steps: int = 0                # over the current epoch, for its summary row
    epoch_loss_sum: float = 0.0         # summed in step order, as sum() over the epoch's losses would
    epoch_motivated_steps: int = 0
    epoch_switches: int = 0
    epoch_lr: float = math.nan          # the lr of the epoch's last step
    wall_s: float = 0.0                 # wall time of the run as of its last checkpoint (all sessions)
    last_motivated_step: int = -1       # the last batch the motivated model trained (-1: none yet): whether the
                                        # base's BatchNorm statistics still hold the motivated context
    train_s: float = 0.0                # time in training steps, waiting for data and evaluating (all sessions)
    data_s: float = 0.0
    eval_s: float = 0.0
    epoch_train_s: float = 0.0          # the same over the current epoch
    epoch_data_s: float = 0.0
    epoch_images: int = 0

    @property
    def position(self) -> tuple[int, int]:
        return self.epoch, self.batch

    @property
    def motivated_fraction(self) -> float:
        return self.motivated_steps / max(self.step, 1)

    @property
    def train_images_per_sec(self) -> float | None:
        """Images per second of the training steps alone (data waits, evaluation and checkpoints left out)."""
        return self.images / self.train_s if self.train_s > 0 else None

    def steps_since_motivated(self) -> int | None:
        """Batches the base has trained since the motivated model last did (None: it never has)."""
        return None if self.last_motivated_step < 0 else self.step - self.last_motivated_step - 1

    def record(self, step: dict, train_s: float = 0.0, data_s: float = 0.0) -> None:
        """Count one trained batch (a `History.steps` record) that took `train_s` seconds after waiting `data_s`
        for its data, and move the position past it."""
        motivated = step["active"] == "motivated"
        if motivated:
            self.last_motivated_step = self.step
        self.train_s += train_s
        self.data_s += data_s
        self.epoch_train_s += train_s
        self.epoch_data_s += data_s
        self.epoch_images += step["images"]
        self.step += 1
        self.batch = step["batch"] + 1
        self.motivated_steps += motivated
        self.switches += step["switched"]
        self.images += step["images"]
        self.epoch_steps += 1
        self.epoch_loss_sum += step["loss"]
        self.epoch_motivated_steps += motivated
        self.epoch_switches += step["switched"]
        self.epoch_lr = step["lr"]

    def end_epoch(self, wall_s: float) -> dict:
        """The epoch's summary row (before evaluation); moves the position to the next epoch's first batch."""
        n = max(self.epoch_steps, 1)
        row = {"epoch": self.epoch, "train_loss": self.epoch_loss_sum / n, "lr": self.epoch_lr,
               "motivated_fraction": self.epoch_motivated_steps / n, "switches": self.epoch_switches,
               "wall_s": wall_s, "train_images_per_sec": self.epoch_images / max(self.epoch_train_s, 1e-9),
               "train_s": self.epoch_train_s, "data_s": self.epoch_data_s}
        self.epoch_steps, self.epoch_loss_sum, self.epoch_motivated_steps, self.epoch_switches = 0, 0.0, 0, 0
        self.epoch_train_s, self.epoch_data_s, self.epoch_images = 0.0, 0.0, 0
        self.epoch_lr = math.nan
        self.epoch, self.batch = self.epoch + 1, 0
        return row

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> TrainState:
        return cls(**state)


def checkpoint_state(pair, state: TrainState, condition, optimizers: dict, optimizer_name: str) -> dict:
    """Everything resume needs, in plain types and CPU tensors (loadable with ``weights_only=True``). On the CPU
    its arena is the live one, not a copy: write it out before the next step."""
    return {**pair.state_dict(copy=False), "step": state.step, "position": list(state.position),
            "totals": state.state_dict(), "condition": condition.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "optimizer": optimizer_name, "rng": checkpoint.rng_state()}


def restore(saved: dict, path: Path, pair, condition, optimizers: dict, optimizer_name: str) -> TrainState:
    """Load a checkpoint into the pair, the condition and the optimizers; returns the run's TrainState.

    Raises:
        CheckpointError: the checkpoint lacks a key (another fastmotive version), was trained with another
            optimizer, or belongs to another pair (raised by the pair before it changes anything).
    """
    missing = [key for key in CHECKPOINT_KEYS if key not in saved]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it was written by another "
                              "version of fastmotive; start a new run")
    if saved["optimizer"] != optimizer_name:
        raise CheckpointError(f"checkpoint {path} was trained with optimizer {saved['optimizer']!r}, not "
                              f"{optimizer_name!r}; resume with --opt {saved['optimizer']}")
    source = f"checkpoint {path}"
    pair.check_state(saved, source=source)   # every check before anything changes
    condition.load_state_dict(saved["condition"])
    for name, opt in optimizers.items():
        opt.load_state_dict(saved["optimizers"][name])
    pair.load_state_dict(saved, source=source)
    checkpoint.set_rng_state(saved["rng"])
    return TrainState.from_state_dict(saved["totals"])
