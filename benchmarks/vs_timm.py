"""fastmotive side by side with timm's own train.py (issue 19): the same image folder, the same models, flags
matched as far as each tool allows, each command timed whole and its peak RSS taken.

Rows: X-C (the base alone: fastmotive ``--arch B``, timm ``--model B``), Y-C (the motivated model alone, both
tools) and fastmotive's X-Y (``--arch B:M``). Data: real Fashion-MNIST (Debian's ``dataset-fashion-mnist``)
written as ``train/<class>/*.png`` and ``val/<class>/*.png`` (RGB, resized to ``--img-size``); without it
scikit-learn's digits, with a note in the JSON.

Scheduling (``--schedule parallel``, the default): each round runs two commands of the same row at once, one
per core (``taskset -c``, OMP_NUM_THREADS=1): timm and fastmotive for X-C and Y-C, two fastmotive X-Y copies
for X-Y, so that every command shares the machine with one of its own kind; the cores swap every repeat.
``--schedule serial`` runs every command alone on the first core, the tools' order alternating per repeat.

Flags both tools get: channels-last where this script's ``--channels-last`` (default auto, fastmotive's own
rule) resolves on (timm: ``--channels-last``), AdamW, lr 1e-3, weight decay 0.05 (not on 1-D tensors: both
tools' default), cosine per step with 1 warmup epoch from 1e-5 (timm: ``--sched-on-updates``), batch 64, label smoothing 0.1 (timm's
default), dropout 0 (timm's default), the model's own head init, seed 0, one loader worker (timm: a
DataLoader worker process; fastmotive: one DALI thread, or one DataLoader worker with ``--fm-loader torch``),
random-resized crop 0.08-1 + horizontal flip with bilinear resampling (timm: ``--color-jitter 0
--train-interpolation bilinear``; fastmotive has no colour jitter), evaluation: shorter side to S/0.875,
centre crop, bilinear. What still differs is listed in the JSON's ``differences``.

Figures: ``train_images_per_sec`` = trained images / (step time + data wait) over all epochs (timm: its
``Train:`` lines' per-epoch averages; fastmotive: summary.csv's ``train_s`` + ``data_s``, else metrics.json's
run-wide ``images_per_sec``, which includes evaluation: ``ips_source`` says which); ``step_images_per_sec``
without the data wait; ``data_s``, ``eval_s`` and ``other_s`` (the wall time left: start-up, model build,
checkpoints, end of run); ``wall_s`` of the whole command; ``peak_rss_mb`` (``os.wait4``'s ru_maxrss, what
``/usr/bin/time -v`` prints: it includes the ~150 MB of library pages any torch process touches as it exits)
and ``peak_anon_mb`` (the largest RssAnon of the main process, sampled every 10 ms: its own memory; a
DataLoader worker process is not in it); final top-1
(fastmotive: BatchNorm-calibrated and raw).

    python benchmarks/vs_timm.py --json benchmarks/results/vs_timm.json    # about 12 min on 2 free cores
    python benchmarks/vs_timm.py --tiny --json /tmp/vs_timm.json            # a smoke run, 1-2 min
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TIMM_TRAIN = REPO.parent / "shared" / "peers" / "timm_train.py"
FMNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                  "ankle-boot")
TARGETS = {"train_ips_vs_timm": (">=", 1.0), "single_wall_vs_timm": ("<=", 1.02),
           "xy_wall_vs_timm_xc_yc": ("<=", 0.45), "single_rss_vs_timm": ("<=", 1.1),
           "single_anon_vs_timm": ("<=", 1.1)}
TINY = {"images": 128, "val_images": 64, "img_size": 16, "epochs": 1, "batch_size": 16, "repeats": 1}
DIFFERENCES = [
    "loader: timm decodes with PIL in a DataLoader worker process; fastmotive's auto loader is DALI's CPU "
    "pipeline (one thread) for folders",
    "evaluation: both evaluate each model once per epoch; with --growth-init paper (--fm-pair-args) fastmotive "
    "first re-estimates the BatchNorm statistics of the models a switch made stale (X-Y's motivated model, and "
    "its base after a recent episode) from a training sample, and measures the raw figures once more after the "
    "last epoch; with the default identity growth nothing is stale",
    "memory format: channels-last where fastmotive's --channels-last resolves on (efficientnet on a CPU): timm "
    "converts the whole model (--channels-last), fastmotive its inputs and layout-free convolution weights",
    "checkpoints: timm saves checkpoint-N, last and model_best every epoch; fastmotive last.pt",
    "warmup: timm's cosine runs over all steps with the warmup inside it (t_initial = epochs x updates); "
    "fastmotive's schedule is its own (linear warmup, then cosine)",
    "fastmotive also checks every image file, counts FLOPs (fvcore) and writes plot.png; the check and the count "
    "are kept in its user cache (a fresh one per benchmark, in the runs folder), so the first X-C and Y-C "
    "commands pay them (0.2-0.4 s each here) and later commands read them",
    "AdamW: fastmotive runs torch's fused AdamW kernel over each model's flat segment (one pass); timm's train.py "
    "gives torch.optim.AdamW's default, the single-tensor loop on a CPU (timm's --opt-kwargs fused=True would "
    "give torch's fused kernel, one call per tensor)",
    "peak_anon_mb is the main process's: timm's DataLoader worker process (and fastmotive's with --fm-loader "
    "torch) is not in it, DALI's thread is",
]


# %% data ---------------------------------------------------------------------------------------------------
def read_source(n_train: int, n_val: int):
    """(name, train images, train labels, val images, val labels, class names, note): real Fashion-MNIST if
    installed, else scikit-learn's digits."""
    from fastmotive.data.datasets.readers import FASHION_MNIST_SYSTEM_DIR, read_dataset
    if FASHION_MNIST_SYSTEM_DIR.is_dir():
        raw, name, classes, note = read_dataset("fashion_mnist"), "fashion_mnist", FMNIST_CLASSES, None
    else:
        raw, name, classes = read_dataset("digits"), "digits", tuple(str(i) for i in range(10))
        note = (f"{FASHION_MNIST_SYSTEM_DIR} absent (apt-get install dataset-fashion-mnist): scikit-learn's "
                f"digits instead, {len(raw.train.labels)} train / {len(raw.val.labels)} val at most")
    tr, va = balanced(raw.train.labels, n_train), balanced(raw.val.labels, n_val)
    return (name, raw.train.images[tr], raw.train.labels[tr], raw.val.images[va], raw.val.labels[va], classes,
            note)


def balanced(labels, n: int):
    """The indices of `n` images taken round-robin over the classes (each class's first images first), in
    file order: every class present from n = classes on."""
    import numpy as np
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return np.sort(np.argsort(rank, kind="stable")[:n])


def write_folder(work: Path, n_train: int, n_val: int, size: int) -> tuple[Path, dict]:
    """The image folder both tools read (reused when already written with the same sizes)."""
    from PIL import Image
    root = work / f"data-{n_train}-{n_val}-{size}px"
    info_file = root / "info.json"
    if info_file.exists() and json.loads(info_file.read_text()).get("selection") == "balanced":
        return root, json.loads(info_file.read_text())
    name, xt, yt, xv, yv, classes, note = read_source(n_train, n_val)
    shutil.rmtree(root, ignore_errors=True)
    for split, images, labels in (("train", xt, yt), ("val", xv, yv)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            im = Image.fromarray(img[0]).resize((size, size), Image.BILINEAR).convert("RGB")
            im.save(root / split / classes[label] / f"{i:05d}.png")
    info = {"source": name, "train": len(yt), "val": len(yv), "img_size": size, "format": "RGB PNG",
            "selection": "balanced", "note": note}
    info_file.write_text(json.dumps(info))
    return root, info


# %% the two commands ---------------------------------------------------------------------------------------
def common_flags(args) -> dict:
    return {"b": str(args.batch_size), "epochs": str(args.epochs), "img": str(args.img_size),
            "j": str(args.workers)}


def timm_command(args, data: Path, model: str, out: Path, name: str) -> list[str]:
    f = common_flags(args)
    return [sys.executable, str(args.timm_train), "--data-dir", str(data), "--train-split", "train",
            "--val-split", "val", "--model", model, "--num-classes", "10", "--img-size", f["img"],
            "--device", "cpu", "--no-prefetcher", "-j", f["j"], "-b", f["b"], "--opt", "adamw", "--lr", "1e-3",
            "--weight-decay", "0.05", "--sched", "cosine", "--sched-on-updates", "--warmup-epochs", "1",
            "--warmup-lr", "1e-5", "--epochs", f["epochs"], "--smoothing", "0.1", "--drop", "0",
            "--color-jitter", "0", "--train-interpolation", "bilinear", "--interpolation", "bilinear",
            "--seed", "0", "--output", str(out), "--experiment", name,
            *(["--channels-last"] if channels_last(args, model) else []), *shlex.split(args.timm_args)]


def fm_command(args, data: Path, arch: str, out: Path, name: str) -> list[str]:
    f = common_flags(args)
    return [sys.executable, "-m", "fastmotive", "train", "--arch", arch, "--dataset", "folder", "--data-dir",
            str(data), "--loader", args.fm_loader, "--img-size", f["img"], "--device", "cpu", "-j", f["j"],
            "-b", f["b"], "--opt", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--sched", "cosine",
            "--warmup-epochs", "1", "--warmup-lr", "1e-5", "--epochs", f["epochs"], "--smoothing", "0.1",
            "--drop", "0", "--head-init", "default", "--seed", "0", "--channels-last", args.channels_last,
            "--no-progress", "--output", str(out),
            "--experiment", name, *shlex.split(args.fm_args),
            *(shlex.split(args.fm_pair_args) if ":" in arch else [])]   # X-Y's own flags (--growth-init)


def channels_last(args, model: str) -> bool:
    """Whether the runs of `model` are channels-last: what fastmotive's --channels-last resolves to on the CPU
    (auto: the family's choice), given to timm as its --channels-last too."""
    from fastmotive.families import family_of
    return args.channels_last == "on" or (args.channels_last == "auto" and family_of(model).channels_last)


class AnonPeak(threading.Thread):
    """The largest RssAnon of process `pid`, read from /proc every `every` s until it ends: its own memory
    (heap, tensors), without the shared-library pages that torch's exit touches (ru_maxrss counts them: about
    +150 MB in the last tenth of a second of any process that imported torch and timm)."""

    def __init__(self, pid: int, every: float = 0.01):
        super().__init__(daemon=True)
        self.path, self.every, self.peak_mb, self.done = f"/proc/{pid}/status", every, None, threading.Event()

    def run(self):
        while not self.done.wait(self.every):
            try:
                with open(self.path) as f:
                    anon = next((int(line.split()[1]) for line in f if line.startswith("RssAnon:")), None)
            except OSError:   # not Linux, or the process has gone
                return
            if anon is not None:
                self.peak_mb = max(self.peak_mb or 0.0, anon / 1024)


def run_command(cmd: list[str], core: int | None, log: Path, extra_env: dict) -> dict:
    """Run one command (pinned to `core`, one thread) to its end: wall time, peak RSS, exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", **extra_env}
    env.pop("TRITON_INTERPRET", None)   # the test suite's setting: the commands run as a user runs them
    pin = ["taskset", "-c", str(core)] if core is not None else []
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*pin, *cmd], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        anon = AnonPeak(proc.pid)   # taskset execs the command: the same pid
        anon.start()
        _, status, usage = os.wait4(proc.pid, 0)   # this child's own rusage, not the sum over all children
        wall = time.perf_counter() - t0
        anon.done.set()
        anon.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "peak_anon_mb": anon.peak_mb,
            "returncode": proc.returncode, "core": core}


def run_round(jobs: list[dict], cores: list[int | None]) -> None:
    """Run the round's jobs at once, job i on cores[i]; each job dict gets its measurements."""
    def go(job, core):
        job.update(run_command(job["cmd"], core, job["log"], job["env"]))
    threads = [threading.Thread(target=go, args=(job, core)) for job, core in zip(jobs, cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# %% reading each tool's figures ----------------------------------------------------------------------------
TIMM_TRAIN = re.compile(r"Train: (\d+) \[\s*(\d+)/(\d+) .*?\(([\d.]+)s,\s+([\d.]+)/s\)"   # epoch averages
                        r".*Data: [\d.]+ \(([\d.]+)\)")
TIMM_TEST = re.compile(r"Test: \[\s*(\d+)/(\d+)\]\s+Time: [\d.]+ \(([\d.]+)\)")


def read_timm(log: Path, run_dir: Path, batch: int) -> dict:
    """timm's figures from its log (each epoch's last `Train:` line carries the epoch's average update and data
    time; its training loader drops the last partial batch) and its summary.csv."""
    text = log.read_text()
    epochs = {}
    for m in TIMM_TRAIN.finditer(text):
        epoch, idx, updates, avg_s, _rate, data_avg = m.groups()
        if int(idx) == int(updates) - 1:
            epochs[int(epoch)] = (int(updates), float(avg_s), float(data_avg))
    images = sum(u * batch for u, _, _ in epochs.values())
    step_s = sum(u * t for u, t, _ in epochs.values())
    data_s = sum(u * d for u, _, d in epochs.values())
    eval_s = sum((int(last) + 1) * float(avg) for idx, last, avg in TIMM_TEST.findall(text) if idx == last)
    rows = read_csv(run_dir / "summary.csv")
    return {"images": images, "train_images_per_sec": images / step_s if step_s else None,
            "step_images_per_sec": images / (step_s - data_s) if step_s > data_s else None,
            "train_s": step_s - data_s, "data_s": data_s, "eval_s": eval_s, "ips_source": "timm Train: lines",
            "top1": float(rows[-1]["eval_top1"]) if rows else None, "epochs_done": len(rows)}


def other_s(run: dict) -> float | None:
    """The command's wall time outside training, data waits and evaluation: start-up, model build,
    checkpoints, end-of-run work."""
    parts = [run.get(k) for k in ("train_s", "data_s", "eval_s")]
    return None if None in parts or run.get("wall_s") is None else run["wall_s"] - sum(parts)


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(row: dict, key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def fm_speed(run_dir: Path, metrics: dict) -> dict:
    """Training images/s from summary.csv's per-epoch train_s/data_s (the issue-19 columns) when they are
    there and non-zero, else metrics.json's run-wide images_per_sec (evaluation included)."""
    images = sum(int(r["images"]) for r in read_csv(run_dir / "steps.csv"))
    rows = read_csv(run_dir / "summary.csv")
    train_s = sum(number(r, "train_s") or 0.0 for r in rows)
    data_s = sum(number(r, "data_s") or 0.0 for r in rows)
    out = {"images": images, "train_s": train_s or None, "data_s": data_s if train_s else None,
           "eval_s": metrics.get("eval_s"),
           "reported_train_images_per_sec": metrics.get("train_images_per_sec")}
    if train_s > 0:
        return {**out, "train_images_per_sec": images / (train_s + data_s),
                "step_images_per_sec": images / train_s, "ips_source": "summary.csv train_s + data_s"}
    return {**out, "train_images_per_sec": metrics.get("images_per_sec"), "step_images_per_sec": None,
            "ips_source": "metrics.json images_per_sec (includes evaluation)"}


def read_fm(run_dir: Path) -> dict:
    mfile = run_dir / "metrics.json"
    metrics = json.loads(mfile.read_text()) if mfile.exists() else {}
    keys = {"top1": "base_top1", "top1_raw": "base_top1_raw", "motivated_top1": "motivated_top1",
            "motivated_top1_raw": "motivated_top1_raw", "motivated_fraction": "motivated_fraction",
            "switches": "switches", "epochs_done": "epochs"}
    return {**fm_speed(run_dir, metrics), **{k: metrics.get(m) for k, m in keys.items()}}


# %% the plan -----------------------------------------------------------------------------------------------
def rows(models: list[str]) -> list[tuple[str, str]]:
    """(row, fastmotive arch): X-C, and with two models Y-C and X-Y."""
    if len(models) == 1:
        return [("X-C", models[0])]
    base, motivated = models
    return [("X-C", base), ("Y-C", motivated), ("X-Y", f"{base}:{motivated}")]


def make_job(tool: str, row: str, arch: str, repeat: int, slot: int, args, data: Path, out: Path) -> dict:
    name = f"{tool}-{row}-r{repeat}-{slot}"
    if tool == "timm":
        cmd, env = timm_command(args, data, arch, out, name), {}
    else:   # this checkout's fastmotive, whatever is installed
        # its user cache in the fresh runs folder: the benchmark's first commands count FLOPs and check the folder
        cmd, env = fm_command(args, data, arch, out, name), {"PYTHONPATH": str(REPO),
                                                             "FASTMOTIVE_CACHE_DIR": str(out / "user-cache")}
    return {"tool": tool, "row": row, "model": arch, "repeat": repeat, "cmd": cmd, "env": env,
            "log": out / f"{name}.log", "run_dir": out / name}


def plan(args, data: Path, out: Path, with_timm: bool) -> list[list[dict]]:
    """Rounds of jobs; parallel: two jobs a round (timm beside fastmotive, or two fastmotive copies)."""
    rounds = []
    for r in range(args.repeats):
        for row, arch in rows(args.models):
            if args.schedule == "serial":
                tools = (["timm"] if with_timm and row != "X-Y" else []) + ["fastmotive"]
                rounds += [[make_job(t, row, arch, r, 0, args, data, out)]
                           for t in (tools if r % 2 == 0 else tools[::-1])]
            else:
                tools = ["timm" if with_timm and row != "X-Y" else "fastmotive", "fastmotive"]
                rounds.append([make_job(t, row, arch, r, i, args, data, out) for i, t in enumerate(tools)])
    return rounds


def round_cores(args, n_jobs: int, repeat: int) -> list[int | None]:
    if not args.pin:
        return [None] * n_jobs
    if args.schedule == "serial":
        return [args.cores[0]]
    return [args.cores[(i + repeat) % len(args.cores)] for i in range(n_jobs)]


# %% summary ------------------------------------------------------------------------------------------------
FIGURES = ("wall_s", "peak_rss_mb", "peak_anon_mb", "train_images_per_sec", "step_images_per_sec", "data_s",
           "eval_s", "other_s", "top1", "top1_raw", "motivated_top1", "motivated_top1_raw")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(runs: list[dict]) -> dict:
    """Per (tool, row): the median of each figure over its runs."""
    table = {}
    for run in runs:
        table.setdefault(f"{run['tool']} {run['row']}", []).append(run)
    return {key: {"model": group[0]["model"], "runs": len(group),
                  **{f: median([r.get(f) for r in group]) for f in FIGURES}} for key, group in table.items()}


def paired_ratio(runs: list[dict], row: str, figure: str) -> float | None:
    """Median over repeats of fastmotive / timm for one row, each pair measured in the same repeat (and, in
    parallel mode, at the same time)."""
    values = []
    for rep in {r["repeat"] for r in runs}:
        fm = [r.get(figure) for r in runs if (r["tool"], r["row"], r["repeat"]) == ("fastmotive", row, rep)]
        tm = [r.get(figure) for r in runs if (r["tool"], r["row"], r["repeat"]) == ("timm", row, rep)]
        values.append(ratio(median(fm), median(tm)))
    return median(values)


def ratios(runs: list[dict], table: dict) -> dict:
    def get(key, figure):
        return table.get(key, {}).get(figure)
    out = {}
    for row in ("X-C", "Y-C"):
        out[row] = {"train_ips_vs_timm": paired_ratio(runs, row, "train_images_per_sec"),
                    "step_ips_vs_timm": paired_ratio(runs, row, "step_images_per_sec"),
                    "single_wall_vs_timm": paired_ratio(runs, row, "wall_s"),
                    "single_rss_vs_timm": paired_ratio(runs, row, "peak_rss_mb"),
                    "single_anon_vs_timm": paired_ratio(runs, row, "peak_anon_mb")}
    xy = get("fastmotive X-Y", "wall_s")
    timm_sum = sum_or_none(get("timm X-C", "wall_s"), get("timm Y-C", "wall_s"))
    fm_sum = sum_or_none(get("fastmotive X-C", "wall_s"), get("fastmotive Y-C", "wall_s"))
    out["X-Y"] = {"xy_wall_vs_timm_xc_yc": ratio(xy, timm_sum),
                  "xy_wall_vs_fastmotive_xc_yc": ratio(xy, fm_sum),
                  "xy_rss_vs_timm_max": ratio(get("fastmotive X-Y", "peak_rss_mb"),
                                              max_or_none(get("timm X-C", "peak_rss_mb"),
                                                          get("timm Y-C", "peak_rss_mb")))}
    return out


def sum_or_none(a, b):
    return a + b if a is not None and b is not None else None


def max_or_none(a, b):
    return max(a, b) if a is not None and b is not None else None


def targets(r: dict) -> dict:
    """Each target beside its measured value(s): met when every row it covers meets it."""
    out = {}
    for name, (op, bound) in TARGETS.items():
        values = {row: r[row][name] for row in r if r[row].get(name) is not None}
        met = all((v >= bound) if op == ">=" else (v <= bound) for v in values.values()) if values else None
        out[name] = {"target": f"{op} {bound}", "values": values, "met": met}
    return out


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


COLUMNS = (("wall s", "wall_s", ".1f"), ("RSS MB", "peak_rss_mb", ".0f"), ("anon MB", "peak_anon_mb", ".0f"),
           ("train img/s", "train_images_per_sec", ".1f"), ("step img/s", "step_images_per_sec", ".1f"),
           ("data s", "data_s", ".1f"), ("eval s", "eval_s", ".1f"), ("other s", "other_s", ".1f"),
           ("top1", "top1", ".1f"), ("raw", "top1_raw", ".1f"), ("M top1", "motivated_top1", ".1f"))


def print_table(result: dict) -> None:
    print("\n" + f"{'run':16} {'model':32} " + " ".join(f"{h:>{len(h)}}" for h, _, _ in COLUMNS))
    for key, s in result["table"].items():
        print(f"{key:16} {s['model']:32} " + " ".join(f"{fmt(s[k], f):>{len(h)}}" for h, k, f in COLUMNS))
    print()
    for name, t in result["targets"].items():
        values = ", ".join(f"{row} {v:.3f}" for row, v in t["values"].items()) or "not measured"
        verdict = "-" if t["met"] is None else "met" if t["met"] else "NOT met"
        print(f"{name:26} {values:36} target {t['target']:7} {verdict}")
    xy = result["ratios"].get("X-Y", {})
    own = fmt(xy.get("xy_wall_vs_fastmotive_xc_yc"), ".3f")
    print(f"{'xy_wall_vs_fastmotive':26} {own:36} (X-Y against fastmotive's own X-C + Y-C)")
    if result["timm"]["skipped"]:
        print(f"timm skipped: {result['timm']['skipped']}")


# %% main ---------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3000, help="training images")
    p.add_argument("--val-images", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="each repeat runs every row; cores swap per repeat")
    p.add_argument("--models", default="efficientnet_b0,efficientnet_b2", help="BASE[,MOTIVATED]")
    p.add_argument("--workers", type=int, default=1, help="-j for both tools")
    p.add_argument("--schedule", choices=("parallel", "serial"), default="parallel")
    p.add_argument("--cores", default="0,1", help="the cores to pin to (taskset -c)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="no taskset")
    p.add_argument("--fm-loader", default="auto", help="fastmotive --loader")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="memory format of both tools' runs: fastmotive's --channels-last, and timm's --channels-last "
                        "where it resolves on (auto: the family's choice on the CPU)")
    p.add_argument("--fm-args", default="", help="extra fastmotive train flags, e.g. '--eval-interval 2'")
    p.add_argument("--fm-pair-args", default="", help="extra flags for fastmotive's X-Y only, e.g. '--growth-init "
                   "identity'")
    p.add_argument("--timm-args", default="", help="extra timm train.py flags")
    p.add_argument("--work", default="output/vs_timm", help="image folder and run directories")
    p.add_argument("--timm-train", default=str(DEFAULT_TIMM_TRAIN), help="timm's train.py (unmodified)")
    p.add_argument("--json", required=True)
    p.add_argument("--tiny", action="store_true", help="smoke run: 128/64 images at 16 px, 1 epoch, batch 16, "
                                                       "1 repeat (flags given override these)")
    args = p.parse_args(argv)
    if args.tiny:   # new defaults: flags given still win
        p.set_defaults(**TINY)
        args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",")]
    if not 1 <= len(args.models) <= 2:
        p.error("--models takes one or two names")
    args.cores = [int(c) for c in args.cores.split(",")]
    check_cores(args)
    return args


def check_cores(args) -> None:
    """Pin only to cores this process may use; one core left: run serially, none or no taskset: unpinned."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(args.cores)
    args.cores = [c for c in args.cores if c in allowed]
    if args.pin and (not shutil.which("taskset") or not args.cores):
        print("taskset or the cores asked for are not available: commands run unpinned", flush=True)
        args.pin = False
    if args.pin and len(args.cores) == 1 and args.schedule == "parallel":
        print(f"one core ({args.cores[0]}): --schedule serial", flush=True)
        args.schedule = "serial"


def timm_skip_reason(path: Path) -> str | None:
    if not path.is_file():
        return f"{path} not found (pass --timm-train PATH: timm's train.py, unmodified)"
    if (path.parent / "timm" / "__init__.py").exists():   # would shadow the installed timm; the user's choice
        print(f"note: {path.parent}/timm is a package: train.py imports that timm", flush=True)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work).resolve()
    args.timm_train = Path(args.timm_train).resolve()
    skipped = timm_skip_reason(args.timm_train)
    if skipped:
        print(f"timm skipped: {skipped}", flush=True)
    data, data_info = write_folder(work, args.images, args.val_images, args.img_size)
    out = work / "runs"   # a fresh folder each time: fastmotive refuses to train into an existing run
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    import timm
    import torch
    result = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "data": data_info, "timm": {"train_py": str(args.timm_train), "skipped": skipped,
                                          "version": timm.__version__},
              "differences": DIFFERENCES, "runs": [], "machine": machine_info(torch.device("cpu"))}
    t_start = time.perf_counter()
    for rnd in plan(args, data, out, skipped is None):
        cores = round_cores(args, len(rnd), rnd[0]["repeat"])
        print(" | ".join(f"{j['tool']} {j['row']} {j['model']} r{j['repeat']} core {c}"
                         for j, c in zip(rnd, cores)), flush=True)
        run_round(rnd, cores)
        for job in rnd:
            figures = (read_timm(job["log"], job["run_dir"], args.batch_size) if job["tool"] == "timm"
                       else read_fm(job["run_dir"]))
            run = {k: (str(v) if isinstance(v, Path) else v) for k, v in {**job, **figures}.items()
                   if k not in ("cmd", "env")}
            run["cmd"], run["other_s"] = shlex.join(job["cmd"]), other_s(run)
            if job["returncode"]:
                run["error"] = Path(job["log"]).read_text()[-2000:]
                print(f"  {job['tool']} {job['row']} failed ({job['returncode']}): {job['log']}", flush=True)
            result["runs"].append(run)
        ok = [r for r in result["runs"] if not r["returncode"]]
        result["table"] = summarize(ok)
        result["ratios"] = ratios(ok, result["table"])
        result["targets"] = targets(result["ratios"])
        result["bench_wall_s"] = time.perf_counter() - t_start
        write_json(result, args.json)   # after every round: an interrupted benchmark keeps its figures
    print_table(result)
    return 1 if any(r["returncode"] for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
