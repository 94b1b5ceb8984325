"""The trainer's evaluations: every ``--eval-interval`` epochs and after the last, each model once with the
BatchNorm statistics it ships with (calibrated only where a switch made them stale: `stale_members`), the raw
figures after the last epoch only, and the best model of each member kept beside last.pt (timm's model_best).

An epoch's row has every evaluation column (None where nothing was measured), so summary.csv keeps one header
whichever epochs were evaluated; a run without validation batches has none.
"""
from __future__ import annotations

import functools
import time

from fastmotive.training.evaluation import evaluate_pair, stale_members

FIGURES = ("eval_loss", "top1", "top5")


class EpochEvaluation:
    """Evaluates a pair's members at the end of an epoch (call on every rank; rank 0 keeps the best models).

    Args:
        pair: the MotivatedPair (or single model). config: the run's TrainConfig (eval_interval,
            bn_calibrate_models). val_batches: the validation batches (None: no evaluation).
        calibration, images: the calibration batches and how many images to calibrate from (0: never).
        forward: each member's forward (compiled or not). dist: the process group.
        run: the run directory on rank 0 (best models written there), else None.
    """

    def __init__(self, pair, config, val_batches, calibration, images: int, forward, dist, run=None):
        self.pair, self.config, self.val_batches = pair, config, val_batches
        self.calibration, self.images, self.forward, self.dist, self.run = calibration, images, forward, dist, run
        self.best = {m: (run.read_best(m) or {}).get("top1") if run is not None else None for m in pair.members}

    def columns(self) -> dict:
        """Every evaluation column of this pair, unmeasured."""
        members = self.pair.members
        return {**{f"{m}_{f}{s}": None for s in ("", "_raw") for m in members for f in FIGURES},
                **{f"{m}_bn_calibrated": None for m in members}, "bn_calibration_images": None, "calibration_s": None,
                "eval_s": None}

    def due(self, epoch: int, epochs: int) -> bool:
        return epoch == epochs - 1 or (epoch + 1) % self.config.eval_interval == 0

    def __call__(self, epoch: int, epochs: int, since_motivated: int | None) -> dict:
        """The epoch's evaluation columns: measured when `due`, with the raw figures after the last epoch (none
        at all for a run without validation batches)."""
        if self.val_batches is None:
            return {}
        row = self.columns()
        if not self.due(epoch, epochs):
            return row
        start = time.perf_counter()
        c = self.config
        calibrate = stale_members(self.pair, since_motivated, c.bn_calibrate_models, c.growth_init)
        row.update(evaluate_pair(self.pair, self.val_batches, self.calibration, self.images, self.forward,
                                 self.dist, calibrate=calibrate, raw=epoch == epochs - 1,
                                 on_evaluated=functools.partial(self._keep_best, epoch)))
        row["eval_s"] = time.perf_counter() - start
        return row

    def _keep_best(self, epoch: int, name: str, model, figures: tuple[float, float, float]) -> None:
        loss, top1, top5 = figures
        if self.run is None or (self.best[name] is not None and top1 <= self.best[name]):
            return
        self.best[name] = top1
        self.run.write_best(name, model, epoch=epoch, top1=top1, top5=top5, loss=loss)
