"""``fastmotive compare`` and ``fastmotive tune-k``: the paper's experiments on your own data (Acheli & Gaaloul,
Sec. 4: the X-C / Y-C / X-Y comparison and its ACC/FLOPs measures, the random-activation ablations A and B,
and k chosen by k-fold cross-validation on the training set).

Every training is a `TrainRecipe` run in its own run directory under the comparison folder:

    OUTPUT/NAME/X-C-s0   base only (condition never)          -> the X-C row
                Y-C-s0   motivated only (always)              -> the Y-C row
                X-Y-s0   the chosen condition (streak:2)      -> the X-Y-B and X-Y-M rows
                A-s0     experiment A: random:P, P matched to X-Y-s0's motivated batches per epoch
                B-s0     experiment B: matched:N, N = X-Y-s0's motivated batches per epoch (mean, rounded)
                compare.md / .csv / .json / .png, compare.yaml (the settings)

A run whose metrics.json shows it finished is reused; one with a checkpoint is resumed; so running the same
command again continues an interrupted comparison. A run made with other settings is an error, never
silently mixed in. The FLOPs figures come from each run's metrics.json (fastmotive/flops.py).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import statistics
from pathlib import Path

import yaml

from .errors import ExperimentError
from .flops import FLOPS_CONVENTION, acc_f_ratio, acc_per_flops
from .recipe import RUN_SETTINGS

__all__ = ["ExperimentError", "FirstBatches", "add_compare_parser", "add_tune_k_parser", "compare", "matched_conditions",
           "plot_compare", "summarize", "tune_k", "write_report"]

# Train flags a comparison sets itself for each run; passing them through would be ambiguous.
OWN_FLAGS = ("seed", "resume", "experiment")
# Settings an existing run must share with the comparison to be reused: the recipe's, the budget and the fold.
CHECKED = (*RUN_SETTINGS, "epoch_batches", "val_batches", "fold", "folds")
GFLOP = 1e9


# ---------------------------------------------------------------------------------------------------
# Loaders on a budget
# ---------------------------------------------------------------------------------------------------

class FirstBatches:
    """The first `n` batches of each epoch of a fastmotive loader.

    On a training loader every epoch draws its own shuffled order, so an epoch is `n` random batches of the
    whole training set (a shortened epoch, not a fixed subset); on a validation loader (fixed order) it is
    always the same first `n` batches.
    """

    def __init__(self, loader, n: int):
        if n < 1:
            raise ExperimentError(f"batches per epoch must be >= 1, got {n}")
        self.loader, self.n = loader, min(n, len(loader))

    def __len__(self) -> int:
        return self.n

    def epoch_batches(self, epoch: int, start_batch: int = 0):
        return itertools.islice(self.loader.epoch_batches(epoch, start_batch=start_batch), max(self.n - start_batch, 0))

    def __iter__(self):
        return self.epoch_batches(0)


# ---------------------------------------------------------------------------------------------------
# One run: reuse, resume or start
# ---------------------------------------------------------------------------------------------------

def _train_namespace(argv: list[str]) -> argparse.Namespace:
    """`fastmotive train`'s flags parsed exactly as the train command does (YAML config included)."""
    from . import cli
    parser = argparse.ArgumentParser(prog="fastmotive")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = cli._train_parser(sub)
    return cli._parse_with_config(parser, train_parser, ["train", *argv])


def _check_passthrough(train_argv: list[str], command: str) -> argparse.Namespace:
    ns = _train_namespace(train_argv)
    clashes = sorted(set(OWN_FLAGS) & ns.explicit)
    if clashes:
        raise ExperimentError(f"fastmotive {command} sets {', '.join('--' + c for c in clashes)} itself for each run; "
                           f"drop it (use --seeds/--first-seed for the seeds, --experiment for the folder name)")
    return ns


def _state(run_dir: Path, args) -> tuple[str, dict | None]:
    """("done", metrics) | ("resume", None) | ("new", None) for the run in `run_dir`."""
    from .rundir import RunDir
    if not (run_dir / "args.yaml").is_file():
        return "new", None
    saved = RunDir(run_dir).read_args()
    diffs = [f"{k}: run has {saved.get(k)!r}, this comparison {getattr(args, k, None)!r}"
             for k in CHECKED if saved.get(k) != getattr(args, k, None)]
    if diffs:
        raise ExperimentError(f"run {run_dir} was made with other settings ({'; '.join(diffs)}). Use another "
                           f"--experiment (or --output) for these settings, or delete {run_dir}")
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("epochs", 0) >= args.epochs or (args.max_steps and metrics.get("steps", 0) >= args.max_steps):
            return "done", metrics
    if (run_dir / "last.pt").is_file():
        return "resume", None
    for name in ("steps.csv", "summary.csv", "metrics.json"):   # a start killed before its first checkpoint
        (run_dir / name).unlink(missing_ok=True)
    return "new", None


def _finished(metrics: dict, args) -> bool:
    return metrics.get("epochs", 0) >= args.epochs


def _train_one(args, loaders=None) -> dict | None:
    """Run (or reuse, or resume) one training; returns its metrics, or None when it was interrupted.

    Args:
        args: a `fastmotive train` namespace with `output`, `experiment`, `epoch_batches`, `val_batches`.
        loaders: optional function(recipe) -> (train, val) replacing the recipe's loaders (tune-k's folds).
    """
    from .recipe import TrainRecipe
    run_dir = Path(args.output) / args.experiment
    state, metrics = _state(run_dir, args)
    if state == "done":
        print(f"reusing {run_dir} (finished: {metrics['epochs']} epochs, {metrics['steps']} steps)")
        return metrics
    if state == "resume":
        args.resume, args.explicit = str(run_dir), set()
        print(f"resuming {run_dir}")
    recipe = TrainRecipe(args)
    recipe.setup()
    if loaders is not None:
        recipe.train_batches, recipe.val_batches = loaders(recipe)
    if args.epoch_batches:
        recipe.train_batches = FirstBatches(recipe.train_batches, args.epoch_batches)
    if args.val_batches:
        recipe.val_batches = FirstBatches(recipe.val_batches, args.val_batches)
    if loaders is not None or args.epoch_batches or args.val_batches:
        print(f"  budget: {len(recipe.train_batches)} training batches per epoch, "
              f"{len(recipe.val_batches)} validation batches")
    recipe.train()
    if recipe.trainer.stop_requested:
        return None
    return json.loads((run_dir / "metrics.json").read_text())


def _run_args(base_argv: list[str], opts, *, condition: str, seed: int, name: str, folder: Path, **extra):
    args = _train_namespace([*base_argv, "--arch", opts.arch, "--condition", condition, "--seed", str(seed),
                             "--output", str(folder), "--experiment", name])
    args.epoch_batches, args.val_batches = opts.epoch_batches, opts.val_batches
    for k, v in extra.items():
        setattr(args, k, v)
    return args


def _folder(opts, ns, command: str) -> Path:
    name = opts.experiment or f"{command}-{opts.arch}-{ns.dataset or 'digits'}"
    return Path(opts.output) / re.sub(r"[^\w.-]", "_", name)


def _write_settings(folder: Path, settings: dict) -> None:
    """Record the command's settings; the runs' own args.yaml are what reuse is checked against (`_state`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{settings['command']}.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


# ---------------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------------

# table rows: (row, run label, model whose accuracy it reports)
ROWS = [("X-C", "X-C", "base"), ("X-Y-B", "X-Y", "base"), ("X-Y-M", "X-Y", "motivated"), ("Y-C", "Y-C", "motivated")]
ABLATION_ROWS = [("A-B", "A", "base"), ("A-M", "A", "motivated"), ("B-B", "B", "base"), ("B-M", "B", "motivated")]


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


def _read_steps(run_dir: Path) -> list[dict]:
    with open(run_dir / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


def compare(opts, train_argv: list[str]) -> dict | None:
    """Run (or reuse) every training of a comparison and write its table and plot.

    Args:
        opts: compare's own options (arch, condition, seeds, first_seed, ablation, output, experiment,
            epoch_batches, val_batches).
        train_argv: `fastmotive train` flags applied to every run.

    Returns:
        The summary written to compare.json, or None when a run was interrupted (rerun to continue).
    """
    ns = _check_passthrough(train_argv, "compare")
    folder = _folder(opts, ns, "compare")
    seeds = list(range(opts.first_seed, opts.first_seed + opts.seeds))
    _write_settings(folder, {"command": "compare", "arch": opts.arch, "condition": opts.condition, "seeds": seeds,
                             "ablation": opts.ablation, "epoch_batches": opts.epoch_batches,
                             "val_batches": opts.val_batches, "train_flags": train_argv})
    matching = {}
    for seed in seeds:
        for label, condition in (("X-C", "never"), ("X-Y", opts.condition), ("Y-C", "always")):
            args = _run_args(train_argv, opts, condition=condition, seed=seed, name=f"{label}-s{seed}", folder=folder)
            metrics = _train_one(args)
            if metrics is None:
                return None
            if label == "X-Y":
                xy_done = _finished(metrics, args)
        if opts.ablation != "random":
            continue
        if not xy_done:
            print(f"ablations for seed {seed} skipped: X-Y-s{seed} stopped before its last epoch (--max-steps); "
                  f"A and B are matched to a finished run")
            continue
        match = matched_conditions(_read_steps(folder / f"X-Y-s{seed}"))
        matching[seed] = match
        for label in ("A", "B"):
            args = _run_args(train_argv, opts, condition=match[label], seed=seed, name=f"{label}-s{seed}",
                             folder=folder)
            if _train_one(args) is None:
                return None
    summary = summarize(folder, seeds, ablation=opts.ablation == "random")
    summary["ablation_matching"] = {f"s{s}": m for s, m in matching.items()}
    write_report(folder, summary)
    print(f"wrote {folder / 'compare.md'} (and .csv, .json, .png)")
    print((folder / "compare.md").read_text())
    return summary


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(folder: Path, seeds: list[int], ablation: bool = False) -> dict:
    """The comparison table from the runs' metrics.json files (runs that are missing are left out)."""
    folder = Path(folder)
    runs = {}
    for label in ("X-C", "X-Y", "Y-C", "A", "B"):
        for seed in seeds:
            path = folder / f"{label}-s{seed}" / "metrics.json"
            if path.is_file():
                runs[(label, seed)] = json.loads(path.read_text())
    rows = []
    for row, label, model in ROWS + (ABLATION_ROWS if ablation else []):
        got = [(seed, runs[(label, seed)]) for seed in seeds if (label, seed) in runs]
        accs = [m[f"{model}_top1"] for _, m in got if m.get(f"{model}_top1") is not None]
        flops = [m["train_flops_per_image"] for _, m in got if m.get("train_flops_per_image") is not None]
        acc_mean, acc_sd = _mean_sd(accs)
        rows.append({
            "row": row, "run": label, "model": model, "seeds": [s for s, _ in got], "top1": accs,
            "top1_mean": acc_mean, "top1_sd": acc_sd,
            "train_gflops_per_image": statistics.fmean(flops) / GFLOP if flops else None,
            "motivated_fraction": _mean_or_none([m.get("motivated_image_fraction") for _, m in got]),
            "wall_s": _mean_or_none([m.get("wall_s") for _, m in got]),
            "images_per_sec": _mean_or_none([m.get("images_per_sec") for _, m in got]),
        })
    by = {r["row"]: r for r in rows}
    xc, yc = by["X-C"], by["Y-C"]
    for r in rows:
        r["acc_flops"] = r["acc_f_ratio"] = None
        if r["row"] in ("X-C", "X-Y-M", "A-M", "B-M"):
            continue
        if None in (r["top1_mean"], xc["top1_mean"], r["train_gflops_per_image"], xc["train_gflops_per_image"]):
            continue
        if r["row"] == "Y-C":
            r["acc_flops"] = acc_per_flops(r["top1_mean"], xc["top1_mean"], r["train_gflops_per_image"],
                                           xc["train_gflops_per_image"], "Y-C vs X-C").to_dict()
            continue
        if None in (yc["top1_mean"], yc["train_gflops_per_image"]):
            continue
        q = acc_f_ratio(r["top1_mean"], xc["top1_mean"], yc["top1_mean"], r["train_gflops_per_image"],
                        xc["train_gflops_per_image"], yc["train_gflops_per_image"], what=r["row"])
        r["acc_flops"], r["acc_f_ratio"] = q["acc_flops_xyb"].to_dict(), q["ratio"].to_dict()
    per_seed = {}
    for seed in seeds:
        ms = [runs.get((label, seed)) for label in ("X-C", "X-Y", "Y-C")]
        if None in ms or None in (ms[0].get("base_top1"), ms[1].get("base_top1"), ms[2].get("motivated_top1")):
            continue
        q = acc_f_ratio(ms[1]["base_top1"], ms[0]["base_top1"], ms[2]["motivated_top1"],
                        ms[1]["train_flops_per_image"] / GFLOP, ms[0]["train_flops_per_image"] / GFLOP,
                        ms[2]["train_flops_per_image"] / GFLOP)
        per_seed[f"s{seed}"] = {k: v.to_dict() for k, v in q.items()}
    any_run = next(iter(runs.values()), {})
    return {"folder": str(folder), "flops_convention": FLOPS_CONVENTION, "acc_flops_unit": "top-1 points per GFLOP",
            "seeds": seeds, "rows": rows, "per_seed": per_seed,
            "base_gflops": any_run["base_flops"] / GFLOP if "base_flops" in any_run else None,
            "motivated_gflops": any_run["motivated_flops"] / GFLOP if "motivated_flops" in any_run else None,
            "flops_skipped_ops": any_run.get("flops_skipped_ops"),
            "points": [{"row": row, "seed": seed, "train_gflops_per_image": runs[(label, seed)]["train_flops_per_image"]
                        / GFLOP, "top1": runs[(label, seed)].get(f"{model}_top1")}
                       for row, label, model in ROWS + (ABLATION_ROWS if ablation else []) for seed in seeds
                       if (label, seed) in runs and runs[(label, seed)].get("train_flops_per_image") is not None]}


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _fmt(x, spec: str, missing: str = "n/a") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _fmt_q(q: dict | None, notes: list[str]) -> str:
    """A Quotient cell: its value, or "undefined (n)" with the reason appended to `notes` as note n."""
    if q is None:
        return ""
    if q["value"] is not None:
        return format(q["value"], ".3g")
    if q["reason"] not in notes:
        notes.append(q["reason"])
    return f"undefined ({notes.index(q['reason']) + 1})"


def write_report(folder: Path, summary: dict) -> None:
    """compare.md, compare.csv, compare.json and compare.png in `folder`."""
    folder = Path(folder)
    (folder / "compare.json").write_text(json.dumps(summary, indent=1))
    fields = ["row", "run", "model", "n", "top1_mean", "top1_sd", "train_gflops_per_image", "acc_flops",
              "acc_f_ratio", "motivated_fraction", "wall_s", "images_per_sec"]
    with open(folder / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in summary["rows"]:
            w.writerow({**{k: r.get(k) for k in fields}, "n": len(r["top1"]),
                        "acc_flops": (r["acc_flops"] or {}).get("value"),
                        "acc_f_ratio": (r["acc_f_ratio"] or {}).get("value")})
    lines = [f"# fastmotive compare: {folder.name}", "",
             (f"FLOPs: {summary['flops_convention']}; base {_fmt(summary['base_gflops'], '.4g')} GFLOPs, motivated "
             f"{_fmt(summary['motivated_gflops'], '.4g')} GFLOPs. Train FLOPs = F, the average forward FLOPs per "
             f"training image (F_X-Y for a motivated run). ACC/FLOPs in {summary['acc_flops_unit']}, against X-C."),
             "", ("| row | top-1 % (mean ± sd) | n | train GFLOPs/img | ACC/FLOPs | ACC/F_Ratio | motivated | wall s | "
                 "img/s |"), "|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for r in summary["rows"]:
        acc = _fmt(r["top1_mean"], ".2f") + (f" ± {r['top1_sd']:.2f}" if r["top1_sd"] is not None else "")
        lines.append(f"| {r['row']} | {acc} | {len(r['top1'])} | {_fmt(r['train_gflops_per_image'], '.4g')} | "
                     f"{_fmt_q(r['acc_flops'], notes)} | {_fmt_q(r['acc_f_ratio'], notes)} | "
                     f"{_fmt(r['motivated_fraction'], '.1%')} | {_fmt(r['wall_s'], '.0f')} | "
                     f"{_fmt(r['images_per_sec'], '.0f')} |")
    if summary.get("per_seed"):
        lines += ["", "Per seed: " + "; ".join(f"{s}: ACC/F_Ratio {_fmt_q(q['ratio'], notes)}"
                                              for s, q in summary["per_seed"].items())]
    if notes:
        lines += [""] + [f"({i}) undefined: {reason}" for i, reason in enumerate(notes, 1)]
    skipped = summary.get("flops_skipped_ops") or {}
    if any(skipped.values()):
        lines += ["", "Ops fvcore traced but did not count (0 FLOPs): " + "; ".join(
            f"{m}: {', '.join(f'{op} x{n}' for op, n in ops.items())}" for m, ops in skipped.items() if ops)]
    if summary.get("ablation_matching"):
        lines += ["", "Ablations matched to the X-Y runs (motivated batches per epoch):"]
        for seed, m in summary["ablation_matching"].items():
            lines.append(f"- {seed}: X-Y {m['per_epoch']} of {m['batches_per_epoch']} -> A {m['A']}, B {m['B']}")
    (folder / "compare.md").write_text("\n".join(lines) + "\n")
    plot_compare(summary, folder / "compare.png")


def plot_compare(summary: dict, path: Path) -> None:
    """Top-1 accuracy against average training FLOPs per image: one point per model and seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"X-C": ("tab:blue", "o"), "X-Y-B": ("tab:orange", "s"), "X-Y-M": ("tab:orange", "^"),
              "Y-C": ("tab:green", "D"), "A-B": ("tab:gray", "s"), "A-M": ("tab:gray", "^"),
              "B-B": ("tab:purple", "s"), "B-M": ("tab:purple", "^")}
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for row, (color, marker) in styles.items():
        pts = [p for p in summary["points"] if p["row"] == row and p["top1"] is not None]
        if pts:
            ax.scatter([p["train_gflops_per_image"] * 1e3 for p in pts], [p["top1"] for p in pts], c=color,
                       marker=marker, label=row, alpha=0.8)
    ax.set(xlabel="average training forward MFLOPs per image", ylabel="validation top-1 (%)",
           title=Path(summary["folder"]).name)
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# tune-k
# ---------------------------------------------------------------------------------------------------

def _fold_loaders(raw, folds: int, fold: int, seed: int, img_size: int | None):
    """A function(recipe) -> (train, val) giving fold `fold` of a stratified k-fold split of the training set."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from .data import TensorLoader
    from .data._build import resize_images
    from .data.datasets import ArraySplit

    if not isinstance(raw.train, ArraySplit):
        raise ExperimentError(f"tune-k splits the training set in memory; dataset {raw.name!r} is a folder of files. "
                           f"Use an array dataset (digits, mnist, fashion_mnist, cifar10, cifar100)")
    train_idx, val_idx = list(StratifiedKFold(folds, shuffle=True, random_state=seed)
                              .split(np.zeros(len(raw.train.labels)), raw.train.labels))[fold]

    def make(recipe):
        args = recipe.args
        images = raw.train.images
        if img_size and img_size != raw.img_size:
            images = resize_images(images, img_size)
        common = {"batch_size": args.batch_size, "seed": args.seed, "mean": raw.mean, "std": raw.std,
                  "device": recipe.pair.device, "flip": raw.flip if not args.no_flip else False}
        return (TensorLoader(ArraySplit(images[train_idx], raw.train.labels[train_idx]), train=True, **common),
                TensorLoader(ArraySplit(images[val_idx], raw.train.labels[val_idx]), train=False, **common))
    return make


def tune_k(opts, train_argv: list[str]) -> dict | None:
    """k-fold cross-validation of the condition's k on the training set; the base's held-out accuracy decides.

    Args:
        opts: arch, ks ("1,2,3,4"), folds, rule ("streak"), seed, output, experiment, epoch_batches, val_batches.
        train_argv: `fastmotive train` flags applied to every run.

    Returns:
        The summary written to tune_k.json ({"ks": [...], "chosen_k": k, ...}), or None when interrupted.
    """
    from .data import read_dataset
    ns = _check_passthrough(train_argv, "tune-k")
    try:
        ks = sorted({int(k) for k in opts.ks.split(",")})
    except ValueError:
        raise ExperimentError(f"--ks {opts.ks!r}: expected comma-separated integers >= 1, e.g. 1,2,3,4") from None
    if not ks or ks[0] < 1 or opts.folds < 2:
        raise ExperimentError(f"--ks {opts.ks!r} --folds {opts.folds}: need integers k >= 1 and at least 2 folds")
    folder = _folder(opts, ns, "tune-k")
    _write_settings(folder, {"command": "tune-k", "arch": opts.arch, "ks": ks, "folds": opts.folds, "rule": opts.rule,
                             "seed": opts.seed, "epoch_batches": opts.epoch_batches, "val_batches": opts.val_batches,
                             "train_flags": train_argv})
    raw = read_dataset(ns.dataset, ns.data_dir)
    results = []
    for k in ks:
        accs, fractions = [], []
        for fold in range(opts.folds):
            args = _run_args(train_argv, opts, condition=f"{opts.rule}:{k}", seed=opts.seed, name=f"k{k}-f{fold}",
                             folder=folder, fold=fold, folds=opts.folds)
            metrics = _train_one(args, _fold_loaders(raw, opts.folds, fold, opts.seed, ns.img_size))
            if metrics is None:
                return None
            accs.append(metrics["base_top1"])
            fractions.append(metrics["motivated_fraction"])
        valid = [a for a in accs if a is not None]
        mean, sd = _mean_sd(valid)
        results.append({"k": k, "condition": f"{opts.rule}:{k}", "base_top1": accs, "mean": mean, "sd": sd,
                        "motivated_fraction": statistics.fmean(fractions)})
    scored = [r for r in results if r["mean"] is not None]
    chosen = max(scored, key=lambda r: (r["mean"], -r["k"]))["k"] if scored else None   # ties: the smaller k
    summary = {"folder": str(folder), "folds": opts.folds, "seed": opts.seed, "results": results, "chosen_k": chosen}
    (folder / "tune_k.json").write_text(json.dumps(summary, indent=1))
    with open(folder / "tune_k.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["k", "condition", "base_top1_mean", "base_top1_sd", "motivated_fraction", "folds"])
        for r in results:
            w.writerow([r["k"], r["condition"], r["mean"], r["sd"], r["motivated_fraction"], len(r["base_top1"])])
    lines = [f"# fastmotive tune-k: {folder.name}", "",
             (f"{opts.folds}-fold cross-validation on the training set (stratified, seed {opts.seed}); held-out "
             "top-1 of the base model after motivated training."), "",
             "| k | condition | base top-1 % (mean ± sd) | motivated |", "|---|---|---|---|"]
    for r in results:
        acc = _fmt(r["mean"], ".2f") + (f" ± {r['sd']:.2f}" if r["sd"] is not None else "")
        lines.append(f"| {r['k']} | {r['condition']} | {acc} | {r['motivated_fraction']:.1%} |")
    lines += ["", f"chosen k: {chosen}" + ("" if chosen is None else f" (--condition {opts.rule}:{chosen})")]
    (folder / "tune_k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


# ---------------------------------------------------------------------------------------------------
# Command line (registered in cli.py)
# ---------------------------------------------------------------------------------------------------

_PASS = ("All other flags are `fastmotive train`'s (see `fastmotive train --help`, -c CONFIG.yaml included) and "
         "apply to every run, except --seed, --resume and --experiment, which this command sets.")


def _budget_flags(p) -> None:
    p.add_argument("--epoch-batches", type=int, default=None,
                   help="train only the first N batches of each (shuffled) epoch: a random N x batch-size sample of "
                        "the training set per epoch, to fit a CPU budget")
    p.add_argument("--val-batches", type=int, default=None, help="evaluate on the first N validation batches only")


def add_compare_parser(sub) -> argparse.ArgumentParser:
    from .cli import DEFAULT_ARCH
    p = sub.add_parser("compare", help="X-C vs Y-C vs X-Y (and ablations) per training FLOP, over seeds",
                       epilog=_PASS, allow_abbrev=False)
    p.add_argument("--arch", default=DEFAULT_ARCH, help="BASE:MOTIVATED, e.g. resnet20:resnet32")
    p.add_argument("--condition", default="streak:2", help="the X-Y runs' condition (the paper's: streak:K)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--ablation", choices=["none", "random"], default="none",
                   help="random: add experiments A (random activation) and B (matched count) per seed")
    p.add_argument("--output", default="output", help="parent folder of the comparison folder")
    p.add_argument("--experiment", default=None, help="comparison folder name (default: compare-ARCH-DATASET)")
    _budget_flags(p)
    return p


def add_tune_k_parser(sub) -> argparse.ArgumentParser:
    from .cli import DEFAULT_ARCH
    p = sub.add_parser("tune-k", help="choose the condition's k by k-fold cross-validation on the training set",
                       epilog=_PASS, allow_abbrev=False)
    p.add_argument("--arch", default=DEFAULT_ARCH, help="BASE:MOTIVATED")
    p.add_argument("--ks", default="1,2,3,4", help="comma-separated values of k to try")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--rule", default="streak", choices=["streak", "ema", "valloss", "gradnorm"],
                   help="the condition whose k is tuned")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs and of the fold split")
    p.add_argument("--output", default="output", help="parent folder of the tune-k folder")
    p.add_argument("--experiment", default=None, help="folder name (default: tune-k-ARCH-DATASET)")
    _budget_flags(p)
    return p


def cmd_compare(args) -> int:
    if args.seeds < 1:
        raise ExperimentError(f"--seeds {args.seeds}: need at least 1")
    return 0 if compare(args, args.train_argv) is not None else 130


def cmd_tune_k(args) -> int:
    return 0 if tune_k(args, args.train_argv) is not None else 130
