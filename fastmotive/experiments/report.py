"""The experiments' outputs: compare.md / .csv / .json / .png from `stats.summarize`, and tune_k.md / .csv / .json."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

CSV_FIELDS = ["row", "run", "model", "n", "top1_mean", "top1_sd", "train_gflops_per_image", "acc_flops",
              "acc_f_ratio", "motivated_fraction", "wall_s", "images_per_sec", "top1_raw_mean", "top1_raw_sd"]
# plot style of each table row: (colour, marker); base models square, motivated models triangles
STYLES = {"X-C": ("tab:blue", "o"), "X-Y-B": ("tab:orange", "s"), "X-Y-M": ("tab:orange", "^"),
          "Y-C": ("tab:green", "D"), "A-B": ("tab:gray", "s"), "A-M": ("tab:gray", "^"),
          "B-B": ("tab:purple", "s"), "B-M": ("tab:purple", "^")}


def fmt(x, spec: str, missing: str = "n/a") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_quotient(q: dict | None, notes: list[str]) -> str:
    """A Quotient cell: its value, or "undefined (n)" with the reason appended to `notes` as note n."""
    if q is None:
        return ""
    if q["value"] is not None:
        return format(q["value"], ".3g")
    if q["reason"] not in notes:
        notes.append(q["reason"])
    return f"undefined ({notes.index(q['reason']) + 1})"


def _mean_sd(mean, sd) -> str:
    return fmt(mean, ".2f") + (f" ± {sd:.2f}" if sd is not None else "")


def compare_markdown(folder_name: str, summary: dict) -> str:
    """compare.md: the table, per-seed ratios, the notes on undefined cells, uncounted ops and the matching."""
    lines = [f"# fastmotive compare: {folder_name}", "",
             (f"FLOPs: {summary['flops_convention']}; base {fmt(summary['base_gflops'], '.4g')} GFLOPs, motivated "
              f"{fmt(summary['motivated_gflops'], '.4g')} GFLOPs. Train FLOPs = F, the average forward FLOPs per "
              f"training image (F_X-Y for a motivated run). ACC/FLOPs in {summary['acc_flops_unit']}, against X-C. "
              "Top-1 with BatchNorm statistics calibrated from training images (--bn-calibrate), and raw: with the "
              "statistics as training left them."),
             "", ("| row | top-1 % (mean ± sd) | n | train GFLOPs/img | ACC/FLOPs | ACC/F_Ratio | motivated | wall s | "
                  "img/s | raw top-1 % |"), "|---|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for r in summary["rows"]:
        lines.append(f"| {r['row']} | {_mean_sd(r['top1_mean'], r['top1_sd'])} | {len(r['top1'])} | "
                     f"{fmt(r['train_gflops_per_image'], '.4g')} | {fmt_quotient(r['acc_flops'], notes)} | "
                     f"{fmt_quotient(r['acc_f_ratio'], notes)} | {fmt(r['motivated_fraction'], '.1%')} | "
                     f"{fmt(r['wall_s'], '.0f')} | {fmt(r['images_per_sec'], '.0f')} | "
                     f"{_mean_sd(r.get('top1_raw_mean'), r.get('top1_raw_sd'))} |")
    if summary.get("per_seed"):
        lines += ["", "Per seed: " + "; ".join(f"{s}: ACC/F_Ratio {fmt_quotient(q['ratio'], notes)}"
                                              for s, q in summary["per_seed"].items())]
    if notes:
        lines += [""] + [f"({i}) undefined: {reason}" for i, reason in enumerate(notes, 1)]
    if summary.get("flops_unavailable"):
        lines += ["", f"FLOPs unavailable: {summary['flops_unavailable']}"]
    skipped = summary.get("flops_skipped_ops") or {}
    if any(skipped.values()):
        lines += ["", "Ops fvcore traced but did not count (0 FLOPs): " + "; ".join(
            f"{m}: {', '.join(f'{op} x{n}' for op, n in ops.items())}" for m, ops in skipped.items() if ops)]
    if summary.get("ablation_matching"):
        lines += ["", "Ablations matched to the X-Y runs (motivated batches per epoch):"]
        for seed, m in summary["ablation_matching"].items():
            lines.append(f"- {seed}: X-Y {m['per_epoch']} of {m['batches_per_epoch']} -> A {m['A']}, B {m['B']}")
    return "\n".join(lines) + "\n"


def write_report(folder: Path, summary: dict) -> None:
    """compare.md, compare.csv, compare.json and compare.png in `folder`."""
    folder = Path(folder)
    (folder / "compare.json").write_text(json.dumps(summary, indent=1))
    with open(folder / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in summary["rows"]:
            w.writerow({**{k: r.get(k) for k in CSV_FIELDS}, "n": len(r["top1"]),
                        "acc_flops": (r["acc_flops"] or {}).get("value"),
                        "acc_f_ratio": (r["acc_f_ratio"] or {}).get("value")})
    (folder / "compare.md").write_text(compare_markdown(folder.name, summary))
    plot_compare(summary, folder / "compare.png")


def plot_compare(summary: dict, path: Path) -> None:
    """Top-1 accuracy against average training FLOPs per image: one point per model and seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for row, (color, marker) in STYLES.items():
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


def write_tune_k_report(folder: Path, summary: dict) -> str:
    """tune_k.json, tune_k.csv and tune_k.md in `folder`; returns the markdown."""
    folder, results, chosen = Path(folder), summary["results"], summary["chosen_k"]
    (folder / "tune_k.json").write_text(json.dumps(summary, indent=1))
    with open(folder / "tune_k.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["k", "condition", "base_top1_mean", "base_top1_sd", "motivated_fraction", "folds"])
        for r in results:
            w.writerow([r["k"], r["condition"], r["mean"], r["sd"], r["motivated_fraction"], len(r["base_top1"])])
    lines = [f"# fastmotive tune-k: {folder.name}", "",
             (f"{summary['folds']}-fold cross-validation on the training set (stratified, seed {summary['seed']}); "
              "held-out top-1 of the base model after motivated training."), "",
             "| k | condition | base top-1 % (mean ± sd) | motivated |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['k']} | {r['condition']} | {_mean_sd(r['mean'], r['sd'])} | "
                     f"{r['motivated_fraction']:.1%} |")
    chosen_condition = next((r["condition"] for r in results if r["k"] == chosen), None)
    lines += ["", f"chosen k: {chosen}" + ("" if chosen is None else f" (--condition {chosen_condition})")]
    text = "\n".join(lines) + "\n"
    (folder / "tune_k.md").write_text(text)
    return text


TRANSFER_FIELDS = ["row", "source_run", "n", "source_top1_mean", "source_top1_sd", "top1_mean", "top1_sd",
                   "top1_raw_mean", "top1_raw_sd"]


def transfer_markdown(folder_name: str, summary: dict) -> str:
    """transfer.md: the paper's Table 3 layout, one row per starting point."""
    target = summary["target"]
    lines = [f"# fastmotive transfer: {folder_name}", "",
             (f"Base models fine-tuned on {target} with one recipe and the same seeds: Unmot from the base trained "
              "alone (X-C), Mot from the base trained with its motivated model (X-Y-B). Top-1 % (mean ± sd over "
              "seeds), BN-calibrated (--bn-calibrate), and raw."), "",
             f"| row | from | source top-1 % | {target} top-1 % | n | raw {target} top-1 % |", "|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['row']} | {r['source_run']} | {_mean_sd(r['source_top1_mean'], r['source_top1_sd'])} | "
                     f"{_mean_sd(r['top1_mean'], r['top1_sd'])} | {len(r['top1'])} | "
                     f"{_mean_sd(r['top1_raw_mean'], r['top1_raw_sd'])} |")
    d = summary["difference"]
    if d["per_seed"]:
        per_seed = ", ".join(f"s{s}: {v:+.2f}" for s, v in zip(d["seeds"], d["per_seed"]))
        lines += ["", f"Mot - Unmot: {fmt(d['mean'], '+.2f')}" + (f" ± {d['sd']:.2f}" if d["sd"] is not None else "")
                  + f" points ({per_seed})"]
    return "\n".join(lines) + "\n"


def write_transfer_report(folder: Path, summary: dict) -> str:
    """transfer.json, transfer.csv and transfer.md in `folder`; returns the markdown."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transfer.json").write_text(json.dumps(summary, indent=1))
    with open(folder / "transfer.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TRANSFER_FIELDS)
        w.writeheader()
        for r in summary["rows"]:
            w.writerow({**{k: r.get(k) for k in TRANSFER_FIELDS}, "n": len(r["top1"])})
    text = transfer_markdown(folder.name, summary)
    (folder / "transfer.md").write_text(text)
    return text
