"""The run directory, in timm's conventions: args.yaml, summary.csv (one row per epoch), steps.csv (one
row per batch), metrics.json, plot.png (the paper's Fig. 2) and last.pt (the checkpoint)."""
from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import yaml

from fastmotive.errors import CheckpointError
from fastmotive.run.plot import plot_run
from fastmotive.run.provenance import git_commit

STEP_FIELDS = ["step", "epoch", "batch", "active", "loss", "lr", "images", "switched"]
# How the CSV logs' text reads back: Python floats print as their shortest round-tripping repr, so a value
# read back is the value logged, bit for bit.
STEP_TYPES = {"step": int, "epoch": int, "batch": int, "active": str, "loss": float, "lr": float,
              "images": int, "switched": lambda text: text == "True"}
SUMMARY_INTS = ("epoch", "switches", "bn_calibration_images", "base_bn_calibrated", "motivated_bn_calibrated")
# summary.csv starts with timm's columns (timm's `update_summary`): the base model's calibrated figures are its
# eval_*, copied from base_*; lr is the epoch's last lr. Then the motivated model's figures, then the rest of the
# trainer's row (every name compare, report and metrics read stays).
TIMM_COLUMNS = ("epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr")
EVAL_COPIES = {"eval_loss": "base_eval_loss", "eval_top1": "base_top1", "eval_top5": "base_top5"}
MOTIVATED_COLUMNS = ("motivated_eval_loss", "motivated_top1", "motivated_top5")


class RunDir:
    """A run's folder and its files; the folder is created by the first write, never by opening it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.checkpoint_path = self.path / "last.pt"
        self._step_log: _CsvAppender | None = None   # steps.csv, open while rows arrive

    def holds_run(self) -> bool:
        """Whether a run was started here (its args.yaml or checkpoint exists)."""
        return (self.path / "args.yaml").exists() or self.checkpoint_path.exists()

    def write_args(self, args: dict) -> None:
        """args.yaml; the commit is this code's unless `args` records one (a run extended keeps its own)."""
        args = {"git_commit": git_commit(), **args}
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))

    def read_args(self) -> dict:
        """args.yaml as a mapping with the model kwargs; CheckpointError naming the file when it is not one."""
        path = self.path / "args.yaml"
        if not path.is_file():
            raise CheckpointError(f"{self.path} is not a fastmotive run directory (no args.yaml there)")
        try:
            args = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:   # a !!python tag is refused here too: safe_load constructs no objects
            raise CheckpointError(f"{path} is not valid YAML ({str(exc).splitlines()[0][:200]}): the run's "
                                  "settings cannot be read") from None
        if not isinstance(args, dict) or not isinstance(args.get("model_kwargs"), dict):
            raise CheckpointError(f"{path} holds no run's settings (a mapping with model_kwargs): it was edited "
                                  "or is not fastmotive's")
        return args

    def best_path(self, which: str) -> Path:
        """The best model of member `which` so far (timm's model_best): weights and the BatchNorm statistics it
        was evaluated with, in safetensors, its epoch and top-1 in the metadata."""
        return self.path / f"best_{which}.safetensors"

    def write_best(self, which: str, model, *, epoch: int, **figures: float) -> None:
        """Replace `which`'s best model atomically with `model` as it is now (evaluated at `epoch`)."""
        from safetensors.torch import save_file
        tensors = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
        path = self.best_path(which)
        partial = path.with_suffix(".partial")
        save_file(tensors, partial, metadata={"epoch": str(epoch), **{k: repr(v) for k, v in figures.items()}})
        os.chmod(partial, 0o644)   # safetensors may create 0600 files
        os.replace(partial, path)

    def read_best(self, which: str) -> dict | None:
        """``{"epoch", "top1", "top5", "loss"}`` of `which`'s best model, or None when there is none yet."""
        from safetensors import safe_open
        path = self.best_path(which)
        if not path.is_file():
            return None
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        return {k: (int if k == "epoch" else float)(v) for k, v in meta.items()}

    def log_step(self, record: dict) -> None:
        """Append a row to steps.csv. The file stays open (opening it per row cost more than the rest of the
        loop's bookkeeping) and each row is flushed, so a killed run leaves every row it logged."""
        if self._step_log is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._step_log = _CsvAppender(self.path / "steps.csv", STEP_FIELDS)
        self._step_log.write(record)

    def close(self) -> None:
        """Close steps.csv (a later row opens it again)."""
        if self._step_log is not None:
            self._step_log.close()
            self._step_log = None

    def log_epoch(self, row: dict) -> None:
        """Append the trainer's epoch row to summary.csv, in timm's column order (`summary_row`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        row = summary_row(row)
        _append_csv(self.path / "summary.csv", row, list(row))

    def rewrite_logs(self, history) -> None:
        """Make the CSV logs hold exactly `history` (after a resume from an earlier checkpoint)."""
        self.close()
        for name in ("steps.csv", "summary.csv"):
            (self.path / name).unlink(missing_ok=True)
        if history.steps:
            with open(self.path / "steps.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=STEP_FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(history.steps)
        for row in history.epochs:
            self.log_epoch(row)

    def read_logs(self, steps: int, epochs: int) -> tuple[list[dict], list[dict]]:
        """The first `steps` rows of steps.csv and `epochs` of summary.csv, typed as the trainer records them.

        Raises:
            CheckpointError: a log holds fewer rows than asked (deleted or truncated): the history of the run
                cannot be rebuilt.
        """
        step_rows = _read_csv(self.path / "steps.csv", steps)
        summary_rows = _read_csv(self.path / "summary.csv", epochs)
        steps_typed = [{k: STEP_TYPES[k](v) for k, v in row.items()} for row in step_rows]
        summary_typed = [{k: None if v in ("", None) else (int if k in SUMMARY_INTS else float)(v)   # not measured
                          for k, v in row.items() if k not in EVAL_COPIES} for row in summary_rows]
        return steps_typed, summary_typed

    def write_metrics(self, history, *, wall_s: float, images: int, flops: dict | None = None, times=None) -> dict:
        """Write metrics.json and plot.png for a run whose records are `history` (its `steps` and `epochs`).

        Args:
            history: the whole run's step and epoch records (resumed runs included).
            wall_s, images: wall time and images trained by the whole run, every session (images/sec).
            flops: {"base": FlopCount, "motivated": FlopCount}, or None: adds FLOPs per image and F_{X-Y}.
            times: the run's `TrainState` (its train_s, data_s and eval_s totals): training images/s and where the
                wall time went.
        """
        steps, epochs = history.steps, history.epochs
        last = epochs[-1] if epochs else {}
        evaluated = next((e for e in reversed(epochs) if e.get("base_top1") is not None), {})   # --eval-interval
        metrics = {   # accuracies with the statistics each model ships with, and raw (the checkpoint's statistics)
            **{f"{m}_{k}": evaluated.get(f"{m}_{k}") for k in ("top1", "top5", "top1_raw", "top5_raw", "bn_calibrated")
               for m in ("base", "motivated")},
            "bn_calibration_images": evaluated.get("bn_calibration_images"),
            "motivated_fraction": sum(s["active"] == "motivated" for s in steps) / max(len(steps), 1),
            "switches": sum(s["switched"] for s in steps), "steps": len(steps), "epochs": len(epochs),
            "images_per_sec": images / wall_s if wall_s > 0 else None, "wall_s": wall_s,
            "final_train_loss": last.get("train_loss"),
        }
        if times is not None:   # the training steps alone (timm's img/s), and the time spent elsewhere
            metrics.update(train_images_per_sec=times.train_images_per_sec, train_s=times.train_s,
                           data_s=times.data_s, eval_s=times.eval_s)
        from fastmotive.flops import fvcore_missing, run_flops
        if flops is not None:   # FLOPs per image of both models and F_{X-Y} (fastmotive/flops.py)
            metrics.update(run_flops(steps, flops))
        else:   # compare and the reports read the reason, and show the FLOPs columns as unavailable
            metrics["flops_unavailable"] = fvcore_missing() or "not counted (the Trainer was given no flops=)"
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if steps:
            plot_run(steps, epochs, self.path / "plot.png")
        return metrics


class _CsvAppender:
    def __init__(self, path: Path, fields: list[str]):
        new = not path.exists()
        self.file = open(path, "a", newline="")   # kept open across rows
        self.writer = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        if new:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def summary_row(row: dict) -> dict:
    """The trainer's epoch row as summary.csv holds it: timm's columns first (eval_* copied from the base's
    base_* figures, when the epoch was evaluated), the motivated model's figures next, then the rest in the
    row's order. `RunDir.read_logs` drops the eval_* copies again, so a row read back is the row logged."""
    full = {**row, **{col: row[src] for col, src in EVAL_COPIES.items() if src in row}}
    order = [c for c in (*TIMM_COLUMNS, *MOTIVATED_COLUMNS) if c in full]
    return {c: full[c] for c in order + [c for c in full if c not in order]}


def _append_csv(path: Path, row: dict, fields: list[str]) -> None:
    """Append `row`; a file that exists keeps its header's columns (a row is never written under another
    header's names)."""
    new = not path.exists()
    if not new:
        with open(path, newline="") as f:
            fields = next(csv.reader(f), None) or fields
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _read_csv(path: Path, rows: int) -> list[dict]:
    if rows == 0:
        return []
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the run's history cannot be rebuilt for the resume")
    with open(path, newline="") as f:
        found = list(itertools.islice(csv.DictReader(f), rows))
    if len(found) < rows:
        raise CheckpointError(f"{path} holds {len(found)} rows, the checkpoint needs {rows}: the log was "
                              "truncated, so the run's history cannot be rebuilt for the resume")
    return found
