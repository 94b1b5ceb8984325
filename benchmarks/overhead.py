"""What does fastmotive's training loop cost over a plain PyTorch loop? Issue 5's overhead targets, each
measured in one interleaved run.

Setup: efficientnet_b0:b2, 10 classes, 32x32 images, batch 32, AdamW (lr 1e-3, weight decay 0.05 with timm's
grouping, constant lr), the `tensor` loader over synthetic CIFAR-shaped uint8 images (pad-4 crop + flip).
One *round* runs every variant once, in a rotating order, so drift and background load hit all of them alike;
each ratio is the median over rounds of the ratio measured within a round.

- (a) ``train``: images/sec of fastmotive base-alone training (``fm.Never()``) over a plain hand-written
  PyTorch loop on the same base model and loader: a timm efficientnet_b0 of its own, ``torch.optim.AdamW``
  (foreach) on timm's ``param_groups_weight_decay``, ``zero_grad()``, forward, ``cross_entropy``, backward,
  ``step()``, ``loss.item()``. Target >= 0.97 (framework overhead at most 3 %). Both iterate
  ``--epochs`` epochs of ``--steps`` batches per round, fastmotive as one ``Trainer.fit`` (a whole short run).
- (c) ``switch``: one switch of the training pair (the pair's backend: torch on a CPU, triton on CUDA;
  AdamW state rows) as a fraction of one training step (base b0 step and motivated b2 step, medians from (a)'s
  rounds of the same run), and against a same-size device copy (the floor). Target <= 1 % on a CPU.
- (d) ``alternating``: a whole LossStreak(k=2) run: ``fit()`` wall time over the sum of its own base-step
  and motivated-step times (each step timed inside the run through the trainer's ``step_fn`` seam).
  Target <= 1.01x.
- (e) with ``--compile reduce-overhead`` on CUDA: compiled base-alone training over the eager plain loop,
  target >= 2x at 32 px; also counts dynamo graphs compiled after warm-up (expected: none).

(b), the optimizer step against torch.optim, is `benchmarks/optimizer_step.py`; the per-step bookkeeping
over a long run, `benchmarks/logging_cost.py`.

Usage:  python benchmarks/overhead.py --json benchmarks/results/overhead.json [--threads N] [--rounds R]
        python benchmarks/overhead.py --device cuda --compile none,reduce-overhead   (gpu_check.sh)
Last result (2026-11-27, 2-core x86_64 CPU, no GPU, torch 2.14.1, 2 threads, commit 93e7d01;
docs/benchmarks.md, "Framework overhead"): (a) 1.006, (c) 1.40 % of a base step at batch 32 (the copy floor
alone is 1.20 %), 0.43 % at batch 128, (d) 1.0094.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import time

import numpy as np
import torch
from _common import (ARCH, CONDITIONS, NUM_CLASSES, PlainLoop, TimedTrainer, build_pair_and_plain,
                     machine_info, make_loader, quantiles, sync, write_json)

import fastmotive as fm

TARGETS = {"train_ratio": 0.97, "switch_fraction": 0.01, "alternating_ratio": 1.01, "compiled_speedup": 2.0}
PARTS = ("training", "switch")


# %% (a): the plain loop's step on the same batches, interleaved -------------------------------------------
class Interleaved:
    """A loader wrapper for (a): before handing fastmotive a batch, it runs the plain loop's step on the same
    batch and times it. Within one fit() over many epochs, fastmotive's time is the wall time minus the plain
    steps, the plain loop's the sum of its steps plus the loader's time: both see the same batches, one step
    apart, so background load and clock drift hit both alike."""

    def __init__(self, loader, plain: PlainLoop):
        self.loader, self.plain = loader, plain
        self.epochs: list[dict] = []     # per epoch: start time, plain-step seconds, loader seconds, images
        self.plain_losses: list[float] = []

    def __len__(self):
        return len(self.loader)

    def epoch_batches(self, epoch: int, start_batch: int = 0):
        self.plain.model.train()
        record = {"start": time.perf_counter(), "plain_s": 0.0, "loader_s": 0.0, "images": 0}
        self.epochs.append(record)
        it = self.loader.epoch_batches(epoch, start_batch)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            t1 = time.perf_counter()
            if batch is None:
                return
            images, labels = batch
            self.plain_losses.append(self.plain.step(images, labels))
            record["plain_s"] += time.perf_counter() - t1
            record["loader_s"] += t1 - t0
            record["images"] += len(labels)
            yield images, labels

    def split(self, fit_start: float, fit_end: float) -> list[dict]:
        """Per epoch: fastmotive seconds (from this epoch's first batch to the next epoch's, or to the end of
        fit(); the first also from fit()'s start), plain seconds and images."""
        out = []
        for i, e in enumerate(self.epochs):
            begin = fit_start if i == 0 else e["start"]
            end = self.epochs[i + 1]["start"] if i + 1 < len(self.epochs) else fit_end
            out.append({"fm_s": end - begin - e["plain_s"], "plain_s": e["plain_s"] + e["loader_s"],
                        "images": e["images"]})
        return out


def dynamo_graphs() -> int:
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


# %% (a), (c), (d), (e): training --------------------------------------------------------------------------
def bench_training(args, device: torch.device, out: dict, save) -> fm.MotivatedPair:
    """Fill `out` with the training figures, calling `save()` after each one (a step stopped by its time
    limit keeps what it measured)."""
    pair, plain_model = build_pair_and_plain(args.arch, device)
    plain = PlainLoop(plain_model)
    loader = make_loader(args.steps, args.batch_size, args.img_size, device)
    modes = [None if m == "none" else m for m in args.compile.split(",")]
    # one run per variant and compile mode, all on the one pair: each fit() continues its own run
    trainers = {(v, m): TimedTrainer(pair, m, make_condition())
                for m in modes for v, make_condition in CONDITIONS.items()}
    label = {m: "" if m is None else f"[{m}]" for m in modes}
    out.update({"variants": {}, "rounds": args.rounds, "steps_per_epoch": args.steps,
                "epochs_per_run": args.epochs, "batch_size": args.batch_size, "img_size": args.img_size,
                "errors": {}})

    def failed(key: str, e: Exception) -> None:   # a compiled branch that fails to build is reported
        lines = [x for x in str(e).splitlines()
                 if x.strip() and not x.startswith(("Set TORCHDYNAMO", "backend="))]
        out["errors"][key] = f"{type(e).__name__}: {' '.join(lines)[:400]}"
        print(f"{key}: FAILED, {out['errors'][key]}", flush=True)
        pair.switch_to("base")

    for mode in modes:
        try:
            out.update(bench_base_vs_plain(trainers[("base", mode)], loader, plain, args, label[mode], device,
                                           out["variants"]))
        except Exception as e:  # noqa: BLE001
            failed(f"base{label[mode]}", e)
        save()

    # (d) and images/sec of each condition: whole fit() runs, rotating order each round
    variants = []
    for (v, m), timed in trainers.items():
        try:
            timed.run(loader, 1)   # warm-up
            variants.append((v, m))
        except Exception as e:  # noqa: BLE001
            failed(f"{v}{label[m]}", e)
    graphs_after_warmup = dynamo_graphs()
    records: dict[str, list[dict]] = {f"{v}{label[m]}": [] for v, m in variants}
    for r in range(args.rounds):
        shift = r % len(variants)
        for v, m in variants[shift:] + variants[:shift]:
            records[f"{v}{label[m]}"].append(trainers[(v, m)].run(loader, args.epochs))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {x[-1]['images'] / x[-1]['wall_s']:.0f}" for k, x in records.items()) + " img/s",
              flush=True)
        out["rounds_done"] = {key: [x["images"] / x["wall_s"] for x in recs] for key, recs in records.items()}
        save()
    graphs_after_timing = dynamo_graphs()
    for key, recs in records.items():
        out["variants"][key] = summarize_runs(recs)
    out["alternating_ratio"] = out["variants"]["alternating"]["wall_over_steps"]
    step_times = {m: [x["step_s_median"][m] for k, recs in records.items() if "[" not in k for x in recs
                      if m in x["step_s_median"]] for m in ("base", "motivated")}
    out["step_s"] = {m: quantiles(v) for m, v in step_times.items()}
    if any(m is not None for m in modes):
        out["dynamo_graphs"] = {"after_warmup": graphs_after_warmup, "after_timing": graphs_after_timing,
                                "recompiled_after_warmup": graphs_after_timing - graphs_after_warmup}
    return pair


def bench_base_vs_plain(timed: TimedTrainer, loader, plain: PlainLoop, args, label: str, device,
                        variants: dict) -> dict:
    """(a), (e): base-alone fastmotive and the plain loop, step by step on the same batches, in one fit()."""
    interleaved = Interleaved(loader, plain)
    timed.run(interleaved, 1)   # warm-up: compiles, CUDA graphs recorded, caches hot
    interleaved.epochs.clear()
    trainer = timed.trainer
    first = len(trainer.history.steps)
    sync(device)
    t0 = time.perf_counter()
    trainer.fit(interleaved, epochs=trainer.state.epoch + args.rounds * args.epochs)   # rounds x epochs
    per_epoch = interleaved.split(t0, time.perf_counter())
    assert all(s["active"] == "base" and np.isfinite(s["loss"]) for s in trainer.history.steps[first:])
    assert all(np.isfinite(interleaved.plain_losses))
    fm_ips = [e["images"] / e["fm_s"] for e in per_epoch]
    plain_ips = [e["images"] / e["plain_s"] for e in per_epoch]
    total = {k: sum(e[k] for e in per_epoch) for k in ("fm_s", "plain_s", "images")}
    variants[f"plain (interleaved with base{label})"] = {"images_per_sec": quantiles(plain_ips)}
    variants[f"base{label} (interleaved)"] = {"images_per_sec": quantiles(fm_ips)}
    key = "train_ratio" if not label else f"compiled_speedup{label}"
    ratio = quantiles([f / p for f, p in zip(fm_ips, plain_ips)])
    ratio["total"] = total["plain_s"] / total["fm_s"]
    print(f"(a){label} fastmotive base {total['images'] / total['fm_s']:.1f} img/s, plain loop "
          f"{total['images'] / total['plain_s']:.1f} img/s: ratio {ratio['total']:.4f} "
          f"(per-epoch median {ratio['median']:.4f})", flush=True)
    return {key: ratio}


def summarize_runs(recs: list[dict]) -> dict:
    return {
        "images_per_sec": quantiles([x["images"] / x["wall_s"] for x in recs]),
        "switches_per_run": statistics.median(x["switches"] for x in recs),
        "motivated_fraction": statistics.median(x["steps"]["motivated"] / sum(x["steps"].values())
                                                for x in recs),
        "wall_over_steps": quantiles([x["wall_s"] / sum(x["step_s"].values()) for x in recs]),
        "breakdown_s": {k: statistics.median(x[k] for x in recs) for k in ("wall_s", "switch_s", "prologue_s",
                                                                            "rest_s")}}


# %% (c): switch -------------------------------------------------------------------------------------------
def bench_switch(pair: fm.MotivatedPair, device: torch.device, repeats: int) -> dict:
    nbytes = pair.plan.bytes_moved(state_rows=pair.state_rows_copied, itemsize=pair.arena.data.element_size())
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    backends = [pair.backend] + (["torch"] if pair.backend != "torch" else [])
    samples: dict[str, list[float]] = {"floor": [], **{b: [] for b in backends}}
    for _ in range(3):   # warm-up: views and run tables built, pages touched
        dst.copy_(src)
        for b in backends:
            pair.switch_to("motivated", b)
            pair.switch_to("base", b)
    sync(device)
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        samples["floor"].append(time.perf_counter() - t0)
        for b in backends:
            t0 = time.perf_counter()
            pair.switch_to("motivated" if pair.active == "base" else "base", b)
            sync(device)
            samples[b].append(time.perf_counter() - t0)
    pair.switch_to("base")
    out = {"backend": backends[0], "bytes": nbytes, "state_rows": pair.state_rows_copied,
           "floor_s": quantiles(samples["floor"])}
    for b in backends:
        q = quantiles(samples[b])
        out[b] = {"s": q, "gb_per_s": nbytes / q["median"] / 1e9,
                  "x_floor": q["median"] / out["floor_s"]["median"]}
    return out


def bench_larger_steps(args, device: torch.device, pair: fm.MotivatedPair) -> dict:
    """(c) against larger steps: median base and motivated step times at each of `--switch-batch-sizes`."""
    out = {}
    timed = {name: TimedTrainer(pair, None, CONDITIONS[name]()) for name in ("base", "motivated")}
    for batch_size in (int(b) for b in args.switch_batch_sizes.split(",") if b):
        loader = make_loader(4, batch_size, args.img_size, device)
        medians = {}
        for name, trainer in timed.items():
            trainer.run(loader, 1)
            medians[name] = statistics.median(trainer.steps.times[name][1:])   # the first step warms up
        out[str(batch_size)] = {"step_s": medians}
        print(f"(c) batch {batch_size}: base step {medians['base'] * 1e3:.0f} ms, motivated step "
              f"{medians['motivated'] * 1e3:.0f} ms", flush=True)
    return out


# %% report ------------------------------------------------------------------------------------------------
def summarize(result: dict) -> list[dict]:
    """One row per target: name, value, target, met."""
    rows = []
    tr, sw = result.get("training"), result.get("switch")
    if tr:
        a = tr["train_ratio"]
        rows.append({"target": "(a) base-alone img/s / plain loop img/s", "value": a["total"],
                     "spread": (a["p20"], a["p80"]), "want": ">= 0.97",
                     "met": a["total"] >= TARGETS["train_ratio"]})
        alt = tr["alternating_ratio"]
        rows.append({"target": "(d) alternating run wall / sum of its step times", "value": alt["median"],
                     "spread": (alt["p20"], alt["p80"]), "want": "<= 1.01",
                     "met": alt["median"] <= TARGETS["alternating_ratio"]})
        for key in tr:
            if key.startswith("compiled_speedup["):
                v = tr[key]
                rows.append({"target": f"(e) {key[len('compiled_speedup'):]} base img/s / eager plain loop",
                             "value": v["total"], "spread": (v["p20"], v["p80"]), "want": ">= 2",
                             "met": v["total"] >= TARGETS["compiled_speedup"]})
    if sw:
        s = sw[sw["backend"]]["s"]["median"]
        steps = {str(tr["batch_size"]): tr["step_s"]} if tr else {}
        steps |= {b: {m: {"median": v} for m, v in x["step_s"].items()}
                  for b, x in sw.get("larger_steps", {}).items()}
        for batch_size, step_s in steps.items():
            for m in ("base", "motivated"):
                frac = s / step_s[m]["median"]
                sw[f"fraction_of_{m}_step_batch{batch_size}"] = frac
                rows.append({"target": f"(c) {sw['backend']} switch / one {m} step, batch {batch_size}",
                             "value": frac, "spread": None, "want": "<= 0.01",
                             "met": frac <= TARGETS["switch_fraction"]})
    return rows


def print_report(result: dict, rows: list[dict]) -> None:
    m = result["machine"]
    print(f"\n{m['machine']}, {m['device']}, torch {m['torch']} ({m['torch_threads']} threads), "
          f"commit {m['commit']}"
          f"{' (dirty)' if m['dirty'] else ''}, {m['date']}, load average {result['loadavg']}")
    tr = result.get("training")
    if tr:
        print(f"\n{'variant':28} {'img/s median':>12} {'p20-p80':>17} {'switches/run':>12} {'motivated':>9}")
        for k, v in tr["variants"].items():
            q = v["images_per_sec"]
            print(f"{k:28} {q['median']:12.1f} {q['p20']:8.1f}-{q['p80']:<8.1f} "
                  f"{v.get('switches_per_run', ''):>12} {v.get('motivated_fraction', float('nan')):9.2f}")
        print("step ms (median): " + ", ".join(f"{k} {v['median'] * 1e3:.1f}"
                                                for k, v in tr["step_s"].items()))
        b = tr["variants"]["alternating"]["breakdown_s"]
        print(f"alternating run (median of {tr['rounds']}): wall {b['wall_s']:.3f} s = steps + switches "
              f"{b['switch_s'] * 1e3:.1f} ms + fit() before the first step {b['prologue_s'] * 1e3:.1f} ms "
              f"+ rest {b['rest_s'] * 1e3:.1f} ms")
    sw = result.get("switch")
    if sw:
        timed = [b for b in sw if isinstance(sw[b], dict) and "x_floor" in sw[b]]
        print(f"\nswitch ({sw['bytes'] / 1e6:.1f} MB moved): floor {sw['floor_s']['median'] * 1e3:.2f} ms; "
              + ", ".join(f"{b} {sw[b]['s']['median'] * 1e3:.2f} ms ({sw[b]['x_floor']:.2f}x floor, "
                          f"{sw[b]['gb_per_s']:.1f} GB/s)" for b in timed))
    print(f"\n{'target':58} {'value':>8} {'p20-p80':>15} {'want':>8}  met")
    for r in rows:
        spread = f"{r['spread'][0]:.3f}-{r['spread'][1]:.3f}" if r["spread"] else ""
        met = "yes" if r["met"] else "NO"
        print(f"{r['target']:58} {r['value']:8.4f} {spread:>15} {r['want']:>8}  {met}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default=ARCH, help="the pair trained")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (every variant once per round)")
    p.add_argument("--steps", type=int, default=12, help="batches per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per fit() (a whole short run)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--compile", default="none",
                   help="comma-separated: none, default, reduce-overhead, max-autotune")
    p.add_argument("--repeats", type=int, default=30, help="switches timed")
    p.add_argument("--switch-batch-sizes", default="128",
                   help="comma-separated batch sizes at which (c) is also measured ('' to skip)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: " + ", ".join(PARTS))
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        p.error(f"--parts {args.parts}: choose from {', '.join(PARTS)} (the optimizer step is "
                "benchmarks/optimizer_step.py)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result: dict = {"machine": machine_info(device), "arch": args.arch, "num_classes": NUM_CLASSES,
                    "args": vars(args), "targets": TARGETS}
    load_before = os.getloadavg()[0]
    save = (lambda: write_json(result, args.json)) if args.json else (lambda: None)
    pair = None
    if "training" in parts:
        result["training"] = {}
        pair = bench_training(args, device, result["training"], save)
    if "switch" in parts:
        if pair is None:
            pair = fm.MotivatedPair.from_arch(args.arch, num_classes=NUM_CLASSES).to(device)
            pair.set_state_rows(2)
        result["switch"] = bench_switch(pair, device, args.repeats)
        if args.switch_batch_sizes:
            result["switch"]["larger_steps"] = bench_larger_steps(args, device, pair)
    result["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["summary"] = summarize(result)
    print_report(result, result["summary"])
    if args.json:
        write_json(result, args.json)
    return result


def _stop(signum, frame):
    raise SystemExit(f"stopped by signal {signum}; the figures measured so far are in the JSON")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)   # `timeout` stops the script with SIGTERM: keep what was measured
    main()
