"""Does BatchNorm calibration make a model better or worse than the statistics it has? The rule behind
``--bn-calibrate-models stale`` (docs/reproduction.md, "Which models to calibrate").

Per dataset (digits, real Fashion-MNIST as arrays, and the same images as an image folder) it trains X-C (the
base alone), Y-C (the motivated model alone) and X-Y (the pair) through the real ``fastmotive train``, one at a
time under the same settings, then evaluates every model of every run three ways on the same validation images:
with the statistics it has (raw), calibrated from training images preprocessed as validation is (the default
sample), and calibrated from training images under the training augmentation (the sample before this rule).
It records what the rule chose for each model. A finished run is reused (its directory is its cache).

    OMP_NUM_THREADS=1 python benchmarks/calibration_rule.py --json benchmarks/results/calibration_rule.json
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import machine_info, write_json  # noqa: E402

from fastmotive.config import settings  # noqa: E402
from fastmotive.run.saved import open_run  # noqa: E402
from fastmotive.training.evaluation import CalibrationBatches, evaluate_pair  # noqa: E402

COMMON = ["-b", "64", "--no-progress", "--bn-calibrate", "0"]   # training never calibrates
DATASETS = {   # name: flags; the folder is written from Fashion-MNIST by `folder_data`
    "digits": ["--dataset", "digits"],
    "fashion_mnist": ["--dataset", "fashion_mnist", "--epoch-batches", "24", "--val-batches", "16"],
    "folder": ["--dataset", "folder", "--img-size", "32"],
}


def folder_data(work: Path, train: int = 1500, val: int = 500) -> Path:
    """Real Fashion-MNIST images as a 32 px image folder, written as benchmarks/vs_timm.py writes its own."""
    from vs_timm import write_folder
    return write_folder(work, train, val, 32)[0]


def train(out: Path, name: str, args: list[str]) -> Path:
    """One run through the CLI, reused when it has finished."""
    run = out / name
    if not (run / "metrics.json").exists():
        cmd = [sys.executable, "-m", "fastmotive", "train", *args, *COMMON, "--output", str(out), "--experiment", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return run


def three_ways(run_dir: Path, images: int | None) -> dict:
    """Every model raw, calibrated from the validation-preprocessed sample and from training batches."""
    run = open_run(run_dir)
    # trained with 0; None: the default count; "val": the train loader carries the validation-preprocessed sample
    run.config = settings.replace(run.config, bn_calibrate=images, bn_calibrate_from="val")
    train_loader, val, info = run.open_data()
    sample, count = run.calibration(train_loader, info)
    val = run.validation(val)
    members = run.pair.members
    evaluation = evaluate_pair(run.pair, val, sample, count)
    del train_loader.calibration_sample   # CalibrationBatches falls back to the training batches
    augmented = evaluate_pair(run.pair, val, CalibrationBatches(train_loader), count, raw=False)
    chosen = run.calibrated_members("stale")
    return {m: {"raw": evaluation[f"{m}_top1_raw"], "calibrated_eval_preprocessing": evaluation[f"{m}_top1"],
                "calibrated_train_augmentation": augmented[f"{m}_top1"], "rule_calibrates": m in chosen,
                "rule_top1": evaluation[f"{m}_top1"] if m in chosen else evaluation[f"{m}_top1_raw"]}
            for m in members} | {"images": count, "since_motivated": run.since_motivated}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="efficientnet_b0:efficientnet_b1", help="BASE:MOTIVATED")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--work", default="benchmarks/results/calibration_rule")
    p.add_argument("--images", type=int, default=None, help="calibration images (default: the run's default)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pair-args", default="", help="more train flags for X-Y, e.g. '--growth-init identity'")
    p.add_argument("--rows", default="X-C,Y-C,X-Y", help="which of X-C, Y-C, X-Y to train and measure")
    p.add_argument("--json", default="benchmarks/results/calibration_rule.json")
    args = p.parse_args(argv)
    work = Path(args.work)
    base, motivated = args.arch.split(":")
    result = {"machine": machine_info(torch.device("cpu")), "arch": args.arch, "flags": COMMON, "epochs": args.epochs,
              "datasets": {}}
    for dataset in args.datasets.split(","):
        flags = [*DATASETS[dataset], "--epochs", str(args.epochs)]
        if dataset == "folder":
            flags += ["--data-dir", str(folder_data(work))]
        out, t0, rows = work / dataset, time.perf_counter(), {}
        for row, arch, extra in (("X-C", base, []), ("Y-C", motivated, []), ("X-Y", args.arch, args.pair_args.split())):
            if row in args.rows.split(","):
                rows[row] = three_ways(train(out, row, ["--arch", arch, *flags, *extra]), args.images)
        result["datasets"][dataset] = {"flags": flags, "rows": rows, "wall_s": time.perf_counter() - t0}
        print(dataset, {row: {m: (v["raw"], v["calibrated_eval_preprocessing"], v["calibrated_train_augmentation"],
                                  v["rule_calibrates"]) for m, v in r.items() if isinstance(v, dict)}
                        for row, r in rows.items()}, flush=True)
        write_json(result, args.json)   # each dataset's figures as soon as they exist
    return result


if __name__ == "__main__":
    main()
