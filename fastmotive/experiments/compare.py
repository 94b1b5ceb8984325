"""``compare``: the paper's comparison (Acheli & Gaaloul, Sec. 4) run on your data, seed after seed:

    OUTPUT/NAME/X-C-s0   the base model trained alone          -> the X-C row
                Y-C-s0   the motivated model trained alone     -> the Y-C row
                X-Y-s0   the pair, the chosen condition        -> the X-Y-B and X-Y-M rows
                A-s0     experiment A: random:P, P matched to X-Y-s0's motivated batches per epoch
                B-s0     experiment B: matched:N, N = X-Y-s0's motivated batches per epoch (mean, rounded)
                compare.md / .csv / .json / .png, compare.yaml (the settings)

Every run shares the base TrainConfig and its seed's data order. X-C and Y-C are single-model runs (``--arch
resnet20``, ``--arch resnet32``: their figures are under base_* in their logs); the pair runs of a seed differ only
by the condition.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from fastmotive.config import settings
from fastmotive.config.checks import parse_member_rates
from fastmotive.errors import ExperimentError
from fastmotive.experiments.report import write_report
from fastmotive.experiments.runs import check_settings, experiment_folder, finished, train_one, write_settings
from fastmotive.experiments.stats import summarize
from fastmotive.families import parse_arch

ABLATIONS = ("none", "random")


def matched_conditions(steps: list[dict]) -> dict:
    """Experiments A and B matched to a motivated run's step log (rows with epoch, batch, active).

    Returns:
        {"per_epoch": motivated batches of each epoch, "batches_per_epoch": n, "mean": their mean,
         "A": "random:P", "B": "matched:N"}. A's P makes the expected motivated batches per epoch equal the
        mean: RandomActivation draws once per batch for batches 1..n-1 (an epoch starts on the base), so
        P = mean / (n - 1). B trains exactly N = mean rounded half up random batches of every epoch; the real run's
        count varies from epoch to epoch, B's does not.
    """
    epochs = sorted({int(s["epoch"]) for s in steps})
    if not epochs:
        raise ExperimentError("the X-Y run has no steps to match the ablations to")
    per_epoch = [sum(s["active"] == "motivated" for s in steps if int(s["epoch"]) == e) for e in epochs]
    n = max(sum(1 for s in steps if int(s["epoch"]) == e) for e in epochs)
    mean = sum(per_epoch) / len(per_epoch)
    p = min(mean / (n - 1), 1.0) if n > 1 else 0.0
    return {"per_epoch": per_epoch, "batches_per_epoch": n, "mean": mean, "A": f"random:{p:.6g}",
            "B": f"matched:{min(math.floor(mean + 0.5), n)}"}


def read_steps(run_dir: Path) -> list[dict]:
    """A run's steps.csv, one dict of strings per batch."""
    with open(Path(run_dir) / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


def compare(base, seeds: list[int], ablation: str = "none") -> dict | None:
    """Run (or reuse, or resume) every training of a comparison, then write its table and plot.

    Args:
        base: the TrainConfig every run shares; its `condition` is the X-Y runs' condition, its `output` and
            `experiment` name the comparison folder (default name compare-ARCH-DATASET). Its `seed` is unused.
        seeds: one X-C, X-Y and Y-C run (and A, B) per seed.
        ablation: "random" adds experiments A (random activation) and B (matched count) per seed.

    Returns:
        The summary written to compare.json, or None when a run was interrupted (rerun to continue).

    Raises:
        ExperimentError: no seeds, an unknown ablation, or a run folder made with other settings.
    """
    if not seeds:
        raise ExperimentError("compare needs at least one seed (--seeds N with N >= 1)")
    if ablation not in ABLATIONS:
        raise ExperimentError(f"ablation {ablation!r} is not one of {', '.join(ABLATIONS)}")
    folder = experiment_folder(base, "compare")
    for seed in seeds:   # refuse a folder of other settings before training anything (A and B: when matched)
        for label in CLASSIC_RUNS:
            check_settings(run_config(base, folder, label, seed))
    write_settings(folder, "compare", {"seeds": list(seeds), "ablation": ablation}, base, drop=("seed", "resume"))
    matching = {}
    for seed in seeds:
        results = {}
        for label in CLASSIC_RUNS:
            results[label] = train_one(run_config(base, folder, label, seed))
            if results[label] is None:
                return None
        if ablation != "random":
            continue
        if not finished(results["X-Y"], base):
            print(f"ablations for seed {seed} skipped: X-Y-s{seed} stopped before its last epoch (--max-steps); "
                  f"A and B are matched to a finished run")
            continue
        matching[seed] = match = matched_conditions(read_steps(folder / f"X-Y-s{seed}"))
        for label in ("A", "B"):
            if train_one(run_config(base, folder, label, seed, match[label])) is None:
                return None
    summary = summarize(folder, list(seeds), ablation=ablation == "random")
    summary["ablation_matching"] = {f"s{s}": m for s, m in matching.items()}
    write_report(folder, summary)
    print(f"wrote {folder / 'compare.md'} (and .csv, .json, .png)")
    print((folder / "compare.md").read_text())
    return summary


CLASSIC_RUNS = ("X-C", "X-Y", "Y-C")   # a seed's runs, in the order they train


def run_config(base, folder: Path, label: str, seed: int, condition: str | None = None):
    """The settings of run LABEL-sSEED in `folder`.

    X-C and Y-C train one model alone (``arch`` the base's or the motivated model's name, `settings.ALONE`,
    a ``--drop``/``--drop-path`` BASE:MOTIVATED pair reduced to that model's rate); the pair runs (X-Y, A, B)
    keep the base settings with `condition` (default: the base's, the X-Y runs').
    """
    changes = {"seed": seed, "output": str(folder), "experiment": f"{label}-s{seed}"}
    if label in ("X-C", "Y-C"):
        member = 0 if label == "X-C" else 1
        arch = parse_arch(base.arch)
        changes.update(arch=(arch.base, arch.motivated)[member], **settings.ALONE,
                       **{k: member_rate(getattr(base, k), member) for k in ("drop", "drop_path")})
    else:
        changes["condition"] = base.condition if condition is None else condition
    return settings.replace(base, **changes)


def member_rate(spec, member: int):
    """One member's rate of a ``--drop``/``--drop-path`` value: None and auto stay, "B:M" gives B or M."""
    rates = parse_member_rates(spec)
    return spec if rates is None or rates == "auto" else f"{rates[member]:g}"
