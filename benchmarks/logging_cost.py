"""Is the trainer's per-step bookkeeping flat over a long run? A step's cost at step 50 000 against step 1.

`Trainer.fit` runs 50 000 steps with a step function that does no model work (it returns a scripted loss, so
LossStreak(k=2) switches about every 5 steps), on a tiny pair (two nested `nn.Linear` stacks), with a run
directory (steps.csv, summary.csv, a checkpoint at every epoch end) and progress reporting on: the rich bar on
a pseudo-terminal (``bar``), or a log line every ``--log-interval`` steps (``lines``). What is left per step
is the loop's own bookkeeping: the schedule, the condition, the switch, the history record, the running
totals, the steps.csv row, the bar or log line, and each epoch's summary row and checkpoint. A step's cost is
the time between consecutive step-function calls; flat means the last 5 000 steps cost what the first 5 000
did (ratio ~1). Before the running totals, the bar re-summed every recorded step on every batch and every
checkpoint carried the whole history, so this ratio grew with the run.

Usage:  python benchmarks/logging_cost.py --json benchmarks/results/logging_cost.json [--steps 50000]
Last result (2026-11-30, 2-core x86_64 CPU, torch 2.14.1, 1 thread, on de9fa6f plus this change), per step,
first / last 5 000 of 50 000: log lines every step 67.8 / 67.8 us mean (49.7 / 48.5 median), ratio 1.00; bar
70.0 / 72.2 us (46.1 / 47.7), ratio 1.03. The trainer before this change, the same run with its bar on (its
`_train_batch` replaced): 458 / 6 779 us mean, ratio 14.8, 190 s for the run instead of 6.6 s.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pty
import statistics
import sys
import tempfile
import threading
import time

import torch
from _common import machine_info, write_json
from torch import nn

import fastmotive as fm
from fastmotive.training.step import StepResult

LOSS_CYCLE = (5.0, 4.0, 3.0, 2.0, 6.0)   # three falls then a rise: LossStreak(k=2) switches up and back down


class ClockedStep:
    """A step function without model work: the scripted loss, and the time of each call."""

    def __init__(self):
        self.called_at: list[float] = []

    def __call__(self, model, images, labels, lr, step):
        self.called_at.append(time.perf_counter())
        return StepResult(LOSS_CYCLE[step % len(LOSS_CYCLE)])


def tiny_pair() -> fm.MotivatedPair:
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    motivated = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 2))
    return fm.MotivatedPair(base, motivated)


@contextlib.contextmanager
def stderr_to(display: str):
    """sys.stderr on a pseudo-terminal (so the trainer shows its bar; a thread drains it) or on /dev/null."""
    previous = sys.stderr
    if display == "lines":
        with open(os.devnull, "w") as sink:
            sys.stderr = sink
            try:
                yield
            finally:
                sys.stderr = previous
        return
    master, replica = pty.openpty()
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    sys.stderr = open(replica, "w", buffering=1, closefd=False)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = previous
        os.close(replica)   # the drain sees end of file and stops
        drain.join(timeout=5)
        os.close(master)


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1 << 16):
            pass


def run(display: str, steps: int, steps_per_epoch: int, window: int, log_interval: int) -> dict:
    batches = [(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))] * steps_per_epoch
    step_fn = ClockedStep()
    with tempfile.TemporaryDirectory() as out, stderr_to(display):
        trainer = fm.Trainer(tiny_pair(), condition=fm.LossStreak(k=2), epochs=steps // steps_per_epoch,
                             warmup_epochs=0, output=out, progress=display == "bar",
                             log_interval=log_interval, step_fn=step_fn)
        t0 = time.perf_counter()
        history = trainer.fit(batches)
        wall = time.perf_counter() - t0
    per_step = [b - a for a, b in zip(step_fn.called_at, step_fn.called_at[1:])]
    first, last = per_step[:window], per_step[-window:]
    out = {"display": display, "steps": len(history.steps), "wall_s": wall,
           "switches": sum(s["switched"] for s in history.steps),
           "first_us": {"mean": statistics.fmean(first) * 1e6, "median": statistics.median(first) * 1e6},
           "last_us": {"mean": statistics.fmean(last) * 1e6, "median": statistics.median(last) * 1e6}}
    out["ratio"] = {k: out["last_us"][k] / out["first_us"][k] for k in ("mean", "median")}
    out["window_medians_us"] = [statistics.median(per_step[i:i + window]) * 1e6
                                for i in range(0, len(per_step), window)]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")
    p.add_argument("--steps", type=int, default=50_000, help="steps in the run")
    p.add_argument("--steps-per-epoch", type=int, default=1000, help="batches per epoch (a checkpoint each)")
    p.add_argument("--window", type=int, default=5000, help="steps compared at the start and at the end")
    p.add_argument("--log-interval", type=int, default=1, help="steps between log lines (display 'lines')")
    p.add_argument("--displays", default="lines,bar", help="comma-separated: lines, bar")
    args = p.parse_args(argv)
    result = {"machine": machine_info(torch.device("cpu")), "args": vars(args), "runs": []}
    for display in args.displays.split(","):
        r = run(display, args.steps, args.steps_per_epoch, args.window, args.log_interval)
        result["runs"].append(r)
        first, last = r["first_us"], r["last_us"]
        print(f"{display:5}: {r['steps']} steps in {r['wall_s']:.1f} s, {r['switches']} switches; per step, "
              f"first {args.window}: mean {first['mean']:.1f} us (median {first['median']:.1f}), "
              f"last {args.window}: mean {last['mean']:.1f} us (median {last['median']:.1f}); "
              f"last / first: mean {r['ratio']['mean']:.3f}, median {r['ratio']['median']:.3f}", flush=True)
        print("       median per window (us): " + " ".join(f"{x:.0f}" for x in r["window_medians_us"]))
    if args.json:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
