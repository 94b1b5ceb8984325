"""The run directory, in timm's conventions: args.yaml, summary.csv (one row per epoch), steps.csv (one
row per batch), metrics.json, plot.png (the paper's Fig. 2) and last.pt (the checkpoint)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import yaml

STEP_FIELDS = ["step", "epoch", "batch", "active", "loss", "lr", "images", "switched"]


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.path / "last.pt"
        self.flops = None   # {"base": FlopCount, "motivated": FlopCount}, set by the recipe; goes to metrics.json

    def write_args(self, args: dict) -> None:
        args = dict(args, git_commit=_git_commit())
        (self.path / "args.yaml").write_text(yaml.safe_dump(args, sort_keys=False))

    def read_args(self) -> dict:
        path = self.path / "args.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {self.path} is not a fastmotive run directory")
        return yaml.safe_load(path.read_text())

    def log_step(self, record: dict) -> None:
        _append_csv(self.path / "steps.csv", record, STEP_FIELDS)

    def log_epoch(self, row: dict) -> None:
        _append_csv(self.path / "summary.csv", row, list(row))

    def rewrite_logs(self, history) -> None:
        """Make the CSV logs hold exactly `history` (after a resume from an earlier checkpoint)."""
        for name, rows in (("steps.csv", history.steps), ("summary.csv", history.epochs)):
            (self.path / name).unlink(missing_ok=True)
            for row in rows:
                _append_csv(self.path / name, row, STEP_FIELDS if name == "steps.csv" else list(row))

    def write_metrics(self, trainer, wall_s: float, images_seen: int) -> dict:
        steps, epochs = trainer.history.steps, trainer.history.epochs
        last = epochs[-1] if epochs else {}
        metrics = {
            "base_top1": last.get("base_top1"), "motivated_top1": last.get("motivated_top1"),
            "base_top5": last.get("base_top5"), "motivated_top5": last.get("motivated_top5"),
            "motivated_fraction": sum(s["active"] == "motivated" for s in steps) / max(len(steps), 1),
            "switches": sum(s["switched"] for s in steps), "steps": len(steps), "epochs": len(epochs),
            "images_per_sec": images_seen / wall_s if wall_s > 0 else None, "wall_s": wall_s,
            "final_train_loss": last.get("train_loss"),
        }
        if self.flops is not None:   # FLOPs per image of both models and F_{X-Y} (fastmotive/flops.py)
            from .flops import run_flops
            metrics.update(run_flops(steps, self.flops))
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if steps:
            plot_run(steps, epochs, self.path / "plot.png")
        return metrics


def _append_csv(path: Path, row: dict, fields: list[str]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def plot_run(steps: list[dict], epochs: list[dict], path: Path) -> None:
    """Training loss per step with motivated spans shaded, and both models' val accuracy per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
    ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, color="black")
    start = None
    for s in steps + [{"active": "base", "step": steps[-1]["step"] + 1}]:
        if s["active"] == "motivated" and start is None:
            start = s["step"]
        elif s["active"] != "motivated" and start is not None:
            ax_loss.axvspan(start - 0.5, s["step"] - 0.5, color="tab:orange", alpha=0.3, lw=0)
            start = None
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss (shaded: motivated model active)")
    if epochs and "base_top1" in epochs[0]:
        xs = [e["epoch"] + 1 for e in epochs]
        ax_acc.plot(xs, [e["base_top1"] for e in epochs], "o-", label="base")
        ax_acc.plot(xs, [e["motivated_top1"] for e in epochs], "s-", label="motivated")
        ax_acc.legend()
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
