"""How a training run reports progress: a rich bar on a terminal, else a line every `log_interval` steps; on
both, one line per epoch as it ends (`epoch_line`).

Both read the step just recorded and the running totals (`TrainState`), never the step history, so a report
costs the same at step 50 000 as at step 1.
"""
from __future__ import annotations

import sys
from typing import Protocol, TextIO

from fastmotive.training.state import TrainState


class Progress(Protocol):
    def update(self, step: dict, totals: TrainState) -> None:
        """Called once per batch, after `totals` counted `step` (a `History.steps` record)."""
        ...

    def epoch(self, row: dict) -> None:
        """Called once per epoch with its summary row, after evaluation: one line, as timm prints."""
        ...

    def close(self) -> None: ...


def open_progress(*, bar: bool, log_interval: int, total: int, done: int,
                  stream: TextIO | None = None) -> Progress:
    """The bar when `bar` and the stream (default: stderr) is a terminal, else a line every `log_interval`."""
    stream = sys.stderr if stream is None else stream
    if bar and stream.isatty():
        return ProgressBar(total, done, stream)
    return LogLines(log_interval, stream)


def epoch_line(row: dict) -> str:
    """An epoch's line, as timm's train and eval lines: the training loss, lr, images/s of the training steps alone
    and the time waiting for data; each model's top-1/top-5 and loss with the statistics it ships with (skipped
    epochs of --eval-interval: none) and the evaluation's time; for a pair the motivated share and switches (a
    single model's line names no motivated model)."""
    line = f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f}  lr {row['lr']:.3g}"
    if row.get("train_images_per_sec") is not None:
        line += f"  {row['train_images_per_sec']:.0f} img/s  data {row['data_s']:.1f}s"
    pair = "motivated_top1" in row
    for model in ("base", "motivated") if pair else ("base",):
        if row.get(f"{model}_top1") is not None:
            line += (f"  {model + ' ' if pair else ''}top1 {row[f'{model}_top1']:6.2f} top5 "
                     f"{row[f'{model}_top5']:6.2f} loss {row[f'{model}_eval_loss']:.4f}")
    if row.get("eval_s") is not None:
        line += f"  eval {row['eval_s']:.1f}s" + (f" (calibration {row['calibration_s']:.1f}s)"
                                                  if row.get("bn_calibration_images") else "")
    if pair:
        line += f"  motivated {row['motivated_fraction']:5.1%}  switches {row['switches']}"
    return line


def _rate(totals: TrainState) -> str:
    """Images/s of the training steps alone, over the whole run (evaluations and checkpoints left out)."""
    rate = totals.train_images_per_sec
    return "" if rate is None else f"{rate:.0f} img/s"


class ProgressBar:
    """A rich bar: steps done of all, time left, the loss, the active model, the motivated fraction, img/s."""

    def __init__(self, total: int, done: int, stream: TextIO):
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        self.progress = RichProgress(TextColumn("[bold]train"), BarColumn(),
                                     TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"), console=Console(file=stream))
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self.progress.start()

    def update(self, step: dict, totals: TrainState) -> None:
        info = (f"loss {step['loss']:.3f}  {step['active']:9}  motivated {totals.motivated_fraction:5.1%}  "
                f"{_rate(totals)}")
        self.progress.update(self.task, advance=1, info=info)   # rich redraws from its thread, ~10 times/s

    def epoch(self, row: dict) -> None:
        self.progress.console.print(epoch_line(row))   # above the bar, which stays

    def close(self) -> None:
        self.progress.stop()


class LogLines:
    """One line every `interval` steps: step, epoch, loss, active model, motivated fraction, img/s."""

    def __init__(self, interval: int, stream: TextIO):
        self.interval, self.stream = interval, stream

    def update(self, step: dict, totals: TrainState) -> None:
        if totals.step % self.interval == 0:
            print(f"step {totals.step:7d}  epoch {step['epoch']:3d}  loss {step['loss']:.4f}  "
                  f"{step['active']:9}  motivated {totals.motivated_fraction:5.1%}  {_rate(totals)}",
                  file=self.stream, flush=True)

    def epoch(self, row: dict) -> None:
        print(epoch_line(row), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class NoProgress:
    """Silence: the progress of ranks other than 0 in a multi-process run (rank 0 reports for the job)."""

    def update(self, step: dict, totals: TrainState) -> None:
        pass

    def epoch(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass
