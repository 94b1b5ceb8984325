"""Is the second model worth shipping? The paper's initialisation of the differential tensors against
``--growth-init identity``, row by row under the same settings and seeds (docs/reproduction.md).

Each setting trains, per seed: X-C (the base alone), Y-C (the motivated model alone) and X-Y twice (paper
init, identity init), each through the real ``fastmotive train`` command, one at a time. A finished run is
reused (its directory is its cache), so an interrupted study continues where it stopped. The JSON holds every
run's final calibrated and raw top-1, its per-epoch accuracy curve (how far from convergence), motivated
fraction, switches and wall time.

    OMP_NUM_THREADS=1 python benchmarks/growth_init.py --setting resnet-digits --seeds 3 --json out.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_json  # noqa: E402

REPRO = ["-b", "32", "--warmup-epochs", "0.5"]   # docs/reproduction.md's settings
SETTINGS = {   # name: (base, motivated, flags): the longest runs this CPU affords, see docs/reproduction.md
    "demo": ("efficientnet_b0", "efficientnet_b2", []),   # `make demo` exactly: the CLI's defaults, 12 epochs
    "resnet-digits": ("resnet20", "resnet32", ["--epochs", "10", *REPRO]),
    "resnet-fmnist": ("resnet20", "resnet32", ["--dataset", "fashion_mnist", "--epochs", "4", "--epoch-batches",
                                               "100", "--val-batches", "32", *REPRO]),
    "b0-b1": ("efficientnet_b0", "efficientnet_b1", ["--epochs", "8", *REPRO]),
}
ROWS = ("X-C", "Y-C", "X-Y paper", "X-Y identity")


def row_args(row: str, base: str, motivated: str) -> list[str]:
    if row == "X-C":
        return ["--arch", base]
    if row == "Y-C":
        return ["--arch", motivated]
    return ["--arch", f"{base}:{motivated}", "--growth-init", row.split()[-1]]


def train(out: Path, name: str, args: list[str]) -> dict:
    """One run through the CLI (reused when its metrics.json exists); its figures and curve."""
    run = out / name
    if not (run / "metrics.json").exists():
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "fastmotive", "train", *args, "--output", str(out), "--experiment", name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        (run / "study_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        (run / "stdout.txt").write_text(done.stdout)
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"metrics": metrics, "wall_s": float((run / "study_wall_s.txt").read_text()),
            "curve": {m: [float(r[f"{m}_top1"]) for r in rows if r.get(f"{m}_top1")] for m in ("base", "motivated")}}


def summarize(runs: dict) -> dict:
    """Mean and sd over seeds of each row's calibrated top-1 (X-Y rows: both models) and its cost."""
    table = {}
    for row, per_seed in runs.items():
        for model in ("base", "motivated"):
            values = [r["metrics"][f"{model}_top1"] for r in per_seed if r["metrics"].get(f"{model}_top1") is not None]
            if not values or (row in ("X-C", "Y-C") and model == "motivated"):
                continue
            key = row if row in ("X-C", "Y-C") else f"{row} {'B' if model == 'base' else 'M'}"
            table[key] = {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                          "per_seed": values,
                          "raw": [r["metrics"].get(f"{model}_top1_raw") for r in per_seed],
                          "motivated_fraction": [r["metrics"]["motivated_fraction"] for r in per_seed],
                          "switches": [r["metrics"]["switches"] for r in per_seed],
                          "wall_s": [r["wall_s"] for r in per_seed]}
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", choices=SETTINGS, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output", default="output/growth-study")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    base, motivated, flags = SETTINGS[args.setting]
    out = Path(args.output) / args.setting
    runs = {row: [] for row in ROWS}
    for seed in range(args.seeds):
        for row in ROWS:
            name = f"{row.replace(' ', '-')}-s{seed}"
            print(f"{args.setting} {name}", flush=True)
            runs[row].append(train(out, name, [*row_args(row, base, motivated), *flags, "--no-progress", "--seed",
                                               str(seed)]))
            result = {"setting": args.setting, "pair": f"{base}:{motivated}", "flags": flags,
                      "seeds": seed + 1, "threads": os.environ.get("OMP_NUM_THREADS"), "table": summarize(runs),
                      "runs": runs, "machine": machine_info(__import__("torch").device("cpu"))}
            write_json(result, args.json)   # after every run: an interrupted study keeps its figures
    for key, r in result["table"].items():
        print(f"{key:16} {r['mean']:6.2f} ± {r['sd']:5.2f}  {[round(v, 1) for v in r['per_seed']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
