"""The comparison table's numbers from the runs' metrics.json: top-1 mean and sd over seeds, training FLOPs per
image, ACC/FLOPs and ACC/F_Ratio (the paper's Eqs. 1-3, fastmotive/flops.py); and tune-k's mean per k."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from fastmotive.flops import FLOPS_CONVENTION, acc_f_ratio, acc_per_flops

GFLOP = 1e9
# table rows: (row, run label, model whose accuracy it reports); X-C and Y-C are single-model runs, whose one
# model's figures are its base_* columns
ROWS = [("X-C", "X-C", "base"), ("X-Y-B", "X-Y", "base"), ("X-Y-M", "X-Y", "motivated"), ("Y-C", "Y-C", "base")]
SINGLE_RUNS = ("X-C", "Y-C")
ABLATION_ROWS = [("A-B", "A", "base"), ("A-M", "A", "motivated"), ("B-B", "B", "base"), ("B-M", "B", "motivated")]
RUN_LABELS = ("X-C", "X-Y", "Y-C", "A", "B")


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (None for fewer than 2 values); (None, None) for no values."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def mean_or_none(values: list) -> float | None:
    """The mean of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def read_runs(folder: Path, seeds: list[int]) -> dict[tuple[str, int], dict]:
    """{(run label, seed): metrics} for the runs of `folder` that have a metrics.json."""
    runs = {}
    for label in RUN_LABELS:
        for seed in seeds:
            path = Path(folder) / f"{label}-s{seed}" / "metrics.json"
            if path.is_file():
                runs[(label, seed)] = json.loads(path.read_text())
    return runs


def _row(row: str, label: str, model: str, got: list[tuple[int, dict]]) -> dict:
    accs = [m[f"{model}_top1"] for _, m in got if m.get(f"{model}_top1") is not None]
    flops = [m["train_flops_per_image"] for _, m in got if m.get("train_flops_per_image") is not None]
    acc_mean, acc_sd = mean_sd(accs)
    raw = [m[f"{model}_top1_raw"] for _, m in got if m.get(f"{model}_top1_raw") is not None]
    raw_mean, raw_sd = mean_sd(raw)
    return {"row": row, "run": label, "model": model, "seeds": [s for s, _ in got], "top1": accs,
            "top1_mean": acc_mean, "top1_sd": acc_sd,   # BN-calibrated (--bn-calibrate); raw: as trained
            "top1_raw": raw, "top1_raw_mean": raw_mean, "top1_raw_sd": raw_sd,
            "train_gflops_per_image": statistics.fmean(flops) / GFLOP if flops else None,
            "motivated_fraction": None if label in SINGLE_RUNS else   # one model: no motivated one
            mean_or_none([m.get("motivated_image_fraction") for _, m in got]),
            "wall_s": mean_or_none([m.get("wall_s") for _, m in got]),
            "images_per_sec": mean_or_none([m.get("images_per_sec") for _, m in got])}


def _add_acc_flops(rows: list[dict]) -> None:
    """ACC/FLOPs against X-C for the base rows and Y-C, and ACC/F_Ratio for the base rows, from the seed means
    (as the paper's tables are); a cell stays None when an input is missing."""
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


def _per_seed(runs: dict, seeds: list[int]) -> dict:
    """ACC/FLOPs and ACC/F_Ratio of each seed whose X-C, X-Y and Y-C runs all have accuracies."""
    per_seed = {}
    for seed in seeds:
        xc, xy, yc = (runs.get((label, seed)) for label in ("X-C", "X-Y", "Y-C"))
        if None in (xc, xy, yc) or None in (xc.get("base_top1"), xy.get("base_top1"), yc.get("base_top1")) \
                or any(m.get("train_flops_per_image") is None for m in (xc, xy, yc)):   # no fvcore: no FLOPs
            continue
        q = acc_f_ratio(xy["base_top1"], xc["base_top1"], yc["base_top1"], xy["train_flops_per_image"] / GFLOP,
                        xc["train_flops_per_image"] / GFLOP, yc["train_flops_per_image"] / GFLOP)
        per_seed[f"s{seed}"] = {k: v.to_dict() for k, v in q.items()}
    return per_seed


def _points(runs: dict, table: list[tuple[str, str, str]], seeds: list[int]) -> list[dict]:
    """The plot's points: one per table row and seed whose run has its training FLOPs."""
    return [{"row": row, "seed": seed, "train_gflops_per_image": m["train_flops_per_image"] / GFLOP,
             "top1": m.get(f"{model}_top1")}
            for row, label, model in table for seed in seeds
            if (m := runs.get((label, seed))) is not None and m.get("train_flops_per_image") is not None]


def summarize(folder: Path, seeds: list[int], ablation: bool = False) -> dict:
    """The comparison table from the runs' metrics.json files (runs that are missing are left out).

    Returns:
        {"folder", "flops_convention", "acc_flops_unit", "seeds", "rows": one dict per table row, "per_seed",
         "base_gflops", "motivated_gflops", "flops_skipped_ops", "points": the plot's (row, seed, F, top-1),
         "flops_unavailable": why no FLOPs were counted (fvcore missing), or None}.
    """
    runs = read_runs(folder, seeds)
    table = ROWS + (ABLATION_ROWS if ablation else [])
    rows = [_row(row, label, model, [(s, runs[(label, s)]) for s in seeds if (label, s) in runs])
            for row, label, model in table]
    _add_acc_flops(rows)
    base_flops, motivated_flops, skipped = model_flops(runs)
    return {"folder": str(folder), "flops_convention": FLOPS_CONVENTION, "acc_flops_unit": "top-1 points per GFLOP",
            "seeds": seeds, "rows": rows, "per_seed": _per_seed(runs, seeds),
            "base_gflops": base_flops / GFLOP if base_flops is not None else None,
            "motivated_gflops": motivated_flops / GFLOP if motivated_flops is not None else None,
            "flops_skipped_ops": skipped, "points": _points(runs, table, seeds),
            "flops_unavailable": next((m["flops_unavailable"] for m in runs.values() if m.get("flops_unavailable")),
                                      None)}


def model_flops(runs: dict) -> tuple[float | None, float | None, dict | None]:
    """(base FLOPs, motivated FLOPs, ops fvcore skipped per model) from the runs: a pair run records both models;
    the single-model runs X-C and Y-C record theirs as base_flops."""
    first = {}   # each run label's metrics at its first seed
    for (label, _), m in sorted(runs.items(), key=lambda kv: kv[0][1]):
        first.setdefault(label, m)
    pair = next((m for label, m in first.items()
                 if label not in SINGLE_RUNS and m.get("motivated_flops") is not None), None)
    if pair is not None:
        return pair.get("base_flops"), pair["motivated_flops"], pair.get("flops_skipped_ops")
    xc, yc = first.get("X-C", {}), first.get("Y-C", {})
    skipped = {m: (r.get("flops_skipped_ops") or {}).get("base") for m, r in (("base", xc), ("motivated", yc)) if r}
    return xc.get("base_flops"), yc.get("base_flops"), skipped or None


def k_result(k: int, condition: str, fold_metrics: list[dict]) -> dict:
    """tune-k's line for one k: the base's held-out top-1 of each fold, their mean and sd, the motivated fraction."""
    accs = [m["base_top1"] for m in fold_metrics]
    mean, sd = mean_sd([a for a in accs if a is not None])
    return {"k": k, "condition": condition, "base_top1": accs, "mean": mean, "sd": sd,
            "motivated_fraction": statistics.fmean(m["motivated_fraction"] for m in fold_metrics)}


def choose_k(results: list[dict]) -> int | None:
    """The k with the best mean held-out top-1, ties to the smaller k; None when no k has an accuracy."""
    scored = [r for r in results if r["mean"] is not None]
    return max(scored, key=lambda r: (r["mean"], -r["k"]))["k"] if scored else None


# transfer (the paper's Table 3): (row, source run label); the row's fine-tune run is ROW-sSEED
TRANSFER_ROWS = (("Unmot", "X-C"), ("Mot", "X-Y"))


def _metrics(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def transfer_summary(source_folder: Path, target_folder: Path, seeds: list[int], target: str) -> dict:
    """The transfer table from the runs' metrics.json (missing runs are left out).

    Returns:
        {"source_folder", "target_folder", "target", "seeds", "rows": per row its source top-1 (the base's, on the
         source dataset) and fine-tuned top-1 (calibrated and raw) per seed with mean and sd, "difference": Mot
         minus Unmot per seed that has both, with mean and sd}. Every figure is a base_* one: the fine-tune runs
         train one model, and the source runs' base is what was fine-tuned.
    """
    rows, by_seed = [], {}
    for row, source in TRANSFER_ROWS:
        src = {s: _metrics(Path(source_folder) / f"{source}-s{s}" / "metrics.json") for s in seeds}
        tuned = {s: _metrics(Path(target_folder) / f"{row}-s{s}" / "metrics.json") for s in seeds}
        done = [s for s in seeds if tuned[s] is not None and tuned[s].get("base_top1") is not None]
        by_seed[row] = {s: tuned[s]["base_top1"] for s in done}
        source_acc = [src[s]["base_top1"] for s in seeds if src[s] and src[s].get("base_top1") is not None]
        accs = [tuned[s]["base_top1"] for s in done]
        raw = [tuned[s]["base_top1_raw"] for s in done if tuned[s].get("base_top1_raw") is not None]
        (source_mean, source_sd), (mean, sd), (raw_mean, raw_sd) = mean_sd(source_acc), mean_sd(accs), mean_sd(raw)
        rows.append({"row": row, "source_run": source, "seeds": done, "source_top1": source_acc,
                     "source_top1_mean": source_mean, "source_top1_sd": source_sd, "top1": accs, "top1_mean": mean,
                     "top1_sd": sd, "top1_raw": raw, "top1_raw_mean": raw_mean, "top1_raw_sd": raw_sd})
    both = [s for s in seeds if s in by_seed["Unmot"] and s in by_seed["Mot"]]
    diffs = [by_seed["Mot"][s] - by_seed["Unmot"][s] for s in both]
    diff_mean, diff_sd = mean_sd(diffs)
    return {"source_folder": str(source_folder), "target_folder": str(target_folder), "target": target,
            "seeds": seeds, "rows": rows,
            "difference": {"seeds": both, "per_seed": diffs, "mean": diff_mean, "sd": diff_sd}}
