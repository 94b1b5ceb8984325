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
SUMMARY_INTS = ("epoch", "switches", "bn_calibration_images")
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
        summary_typed = [{k: (int if k in SUMMARY_INTS else float)(v) for k, v in row.items()
                          if k not in EVAL_COPIES and v not in ("", None)} for row in summary_rows]
        return steps_typed, summary_typed

    def write_metrics(self, history, *, wall_s: float, images: int, flops: dict | None = None) -> dict:
        """Write metrics.json and plot.png for a run whose records are `history` (its `steps` and `epochs`).

        Args:
            history: the whole run's step and epoch records (resumed runs included).
            wall_s, images: wall time and images trained by the whole run, every session (images/sec).
            flops: {"base": FlopCount, "motivated": FlopCount}, or None: adds FLOPs per image and F_{X-Y}.
        """
        steps, epochs = history.steps, history.epochs
        last = epochs[-1] if epochs else {}
        metrics = {   # accuracies: BN-calibrated (--bn-calibrate), and raw (the checkpoint's statistics)
            **{f"{m}_{k}": last.get(f"{m}_{k}") for k in ("top1", "top5", "top1_raw", "top5_raw")
               for m in ("base", "motivated")},
            "bn_calibration_images": last.get("bn_calibration_images"),
            "motivated_fraction": sum(s["active"] == "motivated" for s in steps) / max(len(steps), 1),
            "switches": sum(s["switched"] for s in steps), "steps": len(steps), "epochs": len(epochs),
            "images_per_sec": images / wall_s if wall_s > 0 else None, "wall_s": wall_s,
            "final_train_loss": last.get("train_loss"),
        }
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
