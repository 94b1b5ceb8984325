"""Framework overhead of fastmotive: issue 5's ratio targets, each measured in one interleaved run.

Setup: efficientnet_b0:b2, 10 classes, 32x32 images, batch 32, AdamW (lr 1e-3, weight decay 0.05 with timm's
grouping, constant lr), the `tensor` loader over synthetic CIFAR-shaped uint8 images (pad-4 crop + flip).
One *round* runs every variant once, in a rotating order, so drift and background load hit all of them alike;
each ratio is the median over rounds of the ratio measured within a round.

- (a) ``train``: images/sec of fastmotive base-alone training (``fm.Never()``) over a plain hand-written
  PyTorch loop on the same base model and loader: a timm efficientnet_b0 of its own, ``torch.optim.AdamW``
  (foreach) on timm's ``param_groups_weight_decay``, ``zero_grad()``, forward, ``cross_entropy``, backward,
  ``step()``, ``loss.item()``. Target >= 0.97 (framework overhead at most 3 %). Both iterate
  ``--epochs`` epochs of ``--steps`` batches per round, fastmotive as one ``Trainer.fit`` (a whole short run).
- (b) ``optimizer``: one step of the arena AdamW on efficientnet_b0's segment (1000 classes, 5.3 M
  parameters) over ``torch.optim.AdamW`` with ``foreach=True`` on the same model (and ``fused=True`` and
  ``foreach=False`` for reference). Target >= 1.5x on a CPU.
- (c) ``switch``: one switch of the training pair (device default backend: torch on a CPU, triton on CUDA;
  AdamW state rows) as a fraction of one training step (base b0 step and motivated b2 step, medians from (a)'s
  rounds of the same run), and against a same-size device copy (the floor). Target <= 1 % on a CPU.
- (d) ``alternating``: a whole LossStreak(k=2) run: ``fit()`` wall time over the sum of its own base-step
  and motivated-step times (each ``_train_batch`` call timed inside the run). Target <= 1.01x.
- (e) with ``--compile reduce-overhead`` on CUDA: compiled base-alone training over the eager plain loop,
  target >= 2x at 32 px; also counts dynamo graphs compiled after warm-up (expected: none).

Usage:  python benchmarks/overhead.py --json benchmarks/results/overhead.json [--threads N] [--rounds R]
        python benchmarks/overhead.py --device cuda --compile none,reduce-overhead   (gpu_check.sh)
Last result (2026-11-27, 2-core x86_64 CPU, no GPU, torch 2.14.1, 2 threads, commit 93e7d01; docs/benchmarks.md,
"Framework overhead"): (a) 1.006, (b) 1.70x, (c) 1.40 % of a base step at batch 32 (the copy floor alone is
1.20 %), 0.43 % at batch 128, (d) 1.0094.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastmotive as fm
from fastmotive.data import TensorLoader
from fastmotive.data._synthetic import random_images
from fastmotive.data.datasets import CIFAR10_MEAN, CIFAR10_STD, ArraySplit

ARCH = "efficientnet_b0:b2"
NUM_CLASSES = 10
LR, WEIGHT_DECAY = 1e-3, 0.05
TARGETS = {"train_ratio": 0.97, "optimizer_speedup": 1.5, "switch_fraction": 0.01, "alternating_ratio": 1.01,
           "compiled_speedup": 2.0}
CONDITIONS = {"base": fm.Never, "motivated": fm.Always, "alternating": lambda: fm.LossStreak(k=2)}


# %% helpers ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quantiles(samples: list[float]) -> dict:
    """Median and 20th/80th percentiles."""
    if len(samples) == 1:
        return {"median": samples[0], "p20": samples[0], "p80": samples[0]}
    q = statistics.quantiles(samples, n=5, method="inclusive")
    return {"median": statistics.median(samples), "p20": q[0], "p80": q[3]}


def machine_info(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False,
                                    capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit, "dirty": dirty,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def build_pair_and_plain(arch: str, device: torch.device) -> tuple[fm.MotivatedPair, torch.nn.Module]:
    """The pair, and a plain copy of its base model in tensors of its own (same weights), on `device`."""
    torch.manual_seed(0)
    family, base_name, _ = fm.parse_arch(arch)
    pair = fm.MotivatedPair.from_arch(arch, num_classes=NUM_CLASSES).to(device)
    plain = family.build(base_name, num_classes=NUM_CLASSES).to(device)
    plain.load_state_dict(pair.base.state_dict())
    return pair, plain


def make_loader(steps: int, batch_size: int, img_size: int, device: torch.device) -> TensorLoader:
    """`steps` training batches of synthetic CIFAR-shaped images on `device` (the tensor loader)."""
    rng = np.random.default_rng(0)
    n = steps * batch_size
    split = ArraySplit(random_images(n, 3, img_size, rng), rng.integers(0, NUM_CLASSES, n).astype(np.int64))
    return TensorLoader(split, batch_size=batch_size, train=True, seed=0, flip=True, mean=CIFAR10_MEAN,
                        std=CIFAR10_STD, device=device)


# %% the plain loop (the baseline) ---------------------------------------------------------------------------
class PlainLoop:
    """A plain hand-written PyTorch loop: its own timm model, torch.optim.AdamW (foreach), timm's decay groups."""

    def __init__(self, model: torch.nn.Module, foreach: bool = True):
        import timm.optim
        self.model = model
        groups = timm.optim.param_groups_weight_decay(model, weight_decay=WEIGHT_DECAY)
        self.optimizer = torch.optim.AdamW(groups, lr=LR, foreach=foreach)

    def run(self, loader, epochs: range) -> list[float]:
        model, opt = self.model, self.optimizer
        model.train()
        losses = []
        for epoch in epochs:
            for images, labels in loader.epoch_batches(epoch):
                opt.zero_grad()
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                opt.step()
                losses.append(loss.item())   # a sync point, as the trainer's (it logs the loss)
        return losses


# %% fastmotive, with each step timed ------------------------------------------------------------------------
class TimedTrainer:
    """A Trainer whose `_train_batch` calls (forward, backward, optimizer step, loss.item()) and switches are
    timed from inside the run."""

    def __init__(self, pair: fm.MotivatedPair, compile: str | None):
        self.trainer = fm.Trainer(pair, optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY, schedule="constant",
                                  condition=fm.Never(), epochs=0, compile=compile)
        self.step_times: dict[str, list[float]] = {"base": [], "motivated": []}
        self.switch_times: list[float] = []
        self.first_step_at: float | None = None
        inner_step, inner_switch = self.trainer._train_batch, pair.switch_to

        def timed_step(images, labels, lr):
            active = self.trainer.pair.active
            t0 = time.perf_counter()
            if self.first_step_at is None:
                self.first_step_at = t0
            out = inner_step(images, labels, lr)   # ends with loss.item(): the device has finished the step
            self.step_times[active].append(time.perf_counter() - t0)
            return out

        def timed_switch(name, backend=None):
            if name == pair.active:   # the trainer's epoch end asks for the base even when it is active: a no-op
                return inner_switch(name, backend)
            t0 = time.perf_counter()
            inner_switch(name, backend)
            sync(pair.device)
            self.switch_times.append(time.perf_counter() - t0)
        self.trainer._train_batch = timed_step
        self.trainer.pair = _PairWithTimedSwitch(pair, timed_switch)

    def run(self, loader, condition, epochs: int) -> dict:
        """One whole fit() of `epochs` more epochs; returns its wall time, its steps' and switches' times."""
        t = self.trainer
        t.condition = condition
        for times in self.step_times.values():
            times.clear()
        self.switch_times.clear()
        self.first_step_at = None
        first = len(t.history.steps)
        t.epochs += epochs
        sync(t.pair.device)
        t0 = time.perf_counter()
        t.fit(loader)
        wall = time.perf_counter() - t0
        steps = t.history.steps[first:]
        assert t.pair.active == "base" and all(np.isfinite(s["loss"]) for s in steps)
        step_s = sum(sum(v) for v in self.step_times.values())
        return {"wall_s": wall, "step_s": {m: sum(v) for m, v in self.step_times.items()},
                "steps": {m: len(v) for m, v in self.step_times.items()},
                "step_s_median": {m: statistics.median(v) for m, v in self.step_times.items() if v},
                "switches": len(self.switch_times), "switch_s": sum(self.switch_times),
                "prologue_s": self.first_step_at - t0,
                "rest_s": wall - step_s - sum(self.switch_times) - (self.first_step_at - t0),
                "images": sum(s["images"] for s in steps)}


class _PairWithTimedSwitch:
    """The pair as the trainer sees it, with `switch_to` timed; everything else is the pair's."""

    def __init__(self, pair, switch_to):
        self.__dict__["_pair"], self.__dict__["switch_to"] = pair, switch_to

    def __getattr__(self, name):
        return getattr(self._pair, name)

    def __setattr__(self, name, value):
        setattr(self._pair, name, value)


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
        model, opt = self.plain.model, self.plain.optimizer
        model.train()
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
            opt.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()
            self.plain_losses.append(loss.item())
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
def bench_training(args, device: torch.device) -> tuple[dict, fm.MotivatedPair]:
    pair, plain_model = build_pair_and_plain(args.arch, device)
    plain = PlainLoop(plain_model)
    loader = make_loader(args.steps, args.batch_size, args.img_size, device)
    modes = [None if m == "none" else m for m in args.compile.split(",")]
    trainers = {m: TimedTrainer(pair, m) for m in modes}
    label = {m: "" if m is None else f"[{m}]" for m in modes}
    out = {"variants": {}, "rounds": args.rounds, "steps_per_epoch": args.steps, "epochs_per_run": args.epochs,
           "batch_size": args.batch_size, "img_size": args.img_size}

    out["errors"] = {}

    def failed(key: str, e: Exception) -> None:   # a compiled branch that does not build is reported, not fatal
        lines = [x for x in str(e).splitlines() if x.strip() and not x.startswith(("Set TORCHDYNAMO", "backend="))]
        out["errors"][key] = f"{type(e).__name__}: {' '.join(lines)[:400]}"
        print(f"{key}: FAILED, {out['errors'][key]}", flush=True)
        pair.switch_to("base")

    # (a), (e): base-alone fastmotive and the plain loop, step by step on the same batches
    for mode in list(modes):
        interleaved = Interleaved(loader, plain)
        try:
            trainers[mode].run(interleaved, fm.Never(), 1)   # warm-up: compiles, CUDA graphs recorded, caches hot
        except Exception as e:  # noqa: BLE001
            failed(f"base{label[mode]}", e)
            continue
        interleaved.epochs.clear()
        trainer = trainers[mode].trainer
        trainer.condition, trainer.epochs = fm.Never(), trainer.epochs + args.rounds * args.epochs
        first = len(trainer.history.steps)
        sync(device)
        t0 = time.perf_counter()
        trainer.fit(interleaved)   # one run of rounds x epochs epochs
        per_epoch = interleaved.split(t0, time.perf_counter())
        assert all(s["active"] == "base" and np.isfinite(s["loss"]) for s in trainer.history.steps[first:])
        assert all(np.isfinite(interleaved.plain_losses))
        fm_ips = [e["images"] / e["fm_s"] for e in per_epoch]
        plain_ips = [e["images"] / e["plain_s"] for e in per_epoch]
        total = {k: sum(e[k] for e in per_epoch) for k in ("fm_s", "plain_s", "images")}
        out["variants"][f"plain (interleaved with base{label[mode]})"] = {"images_per_sec": quantiles(plain_ips)}
        out["variants"][f"base{label[mode]} (interleaved)"] = {"images_per_sec": quantiles(fm_ips)}
        key = "train_ratio" if mode is None else f"compiled_speedup[{mode}]"
        out[key] = quantiles([f / p for f, p in zip(fm_ips, plain_ips)])
        out[key]["total"] = total["plain_s"] / total["fm_s"]
        print(f"(a){label[mode]} fastmotive base {total['images'] / total['fm_s']:.1f} img/s, plain loop "
              f"{total['images'] / total['plain_s']:.1f} img/s: ratio {out[key]['total']:.4f} "
              f"(per-epoch median {out[key]['median']:.4f})", flush=True)

    # (d) and images/sec of each condition: whole fit() runs, rotating order each round
    variants = []
    for m in modes:
        for v, make_condition in CONDITIONS.items():
            try:
                trainers[m].run(loader, make_condition(), 1)   # warm-up
                variants.append((v, m))
            except Exception as e:  # noqa: BLE001
                failed(f"{v}{label[m]}", e)
    graphs_after_warmup = dynamo_graphs()
    records: dict[str, list[dict]] = {f"{v}{label[m]}": [] for v, m in variants}
    for r in range(args.rounds):
        shift = r % len(variants)
        for v, m in variants[shift:] + variants[:shift]:
            records[f"{v}{label[m]}"].append(trainers[m].run(loader, CONDITIONS[v](), args.epochs))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{k} {x[-1]['images'] / x[-1]['wall_s']:.0f}" for k, x in records.items()) + " img/s", flush=True)
    graphs_after_timing = dynamo_graphs()
    for key, recs in records.items():
        out["variants"][key] = {
            "images_per_sec": quantiles([x["images"] / x["wall_s"] for x in recs]),
            "switches_per_run": statistics.median(x["switches"] for x in recs),
            "motivated_fraction": statistics.median(x["steps"]["motivated"] / sum(x["steps"].values()) for x in recs),
            "wall_over_steps": quantiles([x["wall_s"] / sum(x["step_s"].values()) for x in recs]),
            "breakdown_s": {k: statistics.median(x[k] for x in recs) for k in ("wall_s", "switch_s", "prologue_s",
                                                                                "rest_s")}}
    out["alternating_ratio"] = out["variants"]["alternating"]["wall_over_steps"]
    step_times = {m: [x["step_s_median"][m] for k, recs in records.items() if "[" not in k for x in recs
                      if m in x["step_s_median"]] for m in ("base", "motivated")}
    out["step_s"] = {m: quantiles(v) for m, v in step_times.items()}
    if any(m is not None for m in modes):
        out["dynamo_graphs"] = {"after_warmup": graphs_after_warmup, "after_timing": graphs_after_timing,
                                "recompiled_after_warmup": graphs_after_timing - graphs_after_warmup}
    return out, pair


# %% (c): switch -------------------------------------------------------------------------------------------
def bench_switch(pair: fm.MotivatedPair, device: torch.device, repeats: int) -> dict:
    from fastmotive.switch import default_backend
    nbytes = pair.plan.bytes_moved(state_rows=pair.state_rows_copied, itemsize=pair.arena.data.element_size())
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    backends = [default_backend(device)] + (["torch"] if device.type == "cuda" else [])
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
    timed = TimedTrainer(pair, None)
    for batch_size in (int(b) for b in args.switch_batch_sizes.split(",") if b):
        loader = make_loader(4, batch_size, args.img_size, device)
        medians = {}
        for name, condition in (("base", fm.Never()), ("motivated", fm.Always())):
            timed.run(loader, condition, 1)
            medians[name] = statistics.median(timed.step_times[name][1:])   # the first step warms up
        out[str(batch_size)] = {"step_s": medians}
        print(f"(c) batch {batch_size}: base step {medians['base'] * 1e3:.0f} ms, motivated step "
              f"{medians['motivated'] * 1e3:.0f} ms", flush=True)
    return out


# %% (b): optimizer ----------------------------------------------------------------------------------------
def bench_optimizer(device: torch.device, repeats: int) -> dict:
    import timm
    import timm.optim
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch("efficientnet_b0:b1", num_classes=1000).to(device)   # b0's segment
    segment = pair.segment("base")
    arena = fm.create_optimizer("adamw", segment, lr=LR, weight_decay=WEIGHT_DECAY)
    segment.grad.normal_()
    model = timm.create_model("efficientnet_b0", num_classes=1000).to(device)
    model.load_state_dict(pair.base.state_dict())
    for p, q in zip(model.parameters(), pair.base.parameters()):
        p.grad = q.grad.clone()

    def torch_adamw(**kw):
        return torch.optim.AdamW(timm.optim.param_groups_weight_decay(model, weight_decay=WEIGHT_DECAY), lr=LR, **kw)
    step = [0]

    def arena_step():
        step[0] += 1
        arena.step(LR, step[0])
    candidates = {"arena": arena_step, "foreach": torch_adamw(foreach=True).step,
                  "single_tensor": torch_adamw(foreach=False).step}
    try:
        candidates["fused"] = torch_adamw(fused=True).step
        candidates["fused"]()
    except (RuntimeError, ValueError) as e:   # fused=True is not supported on every device
        print(f"optimizer: torch fused AdamW unavailable here ({e})")
        candidates.pop("fused")
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for fn in candidates.values():
        for _ in range(3):
            fn()
    sync(device)
    for i in range(repeats):
        for k in list(candidates)[i % len(candidates):] + list(candidates)[:i % len(candidates)]:
            t0 = time.perf_counter()
            candidates[k]()
            sync(device)
            samples[k].append(time.perf_counter() - t0)
    out = {"model": "efficientnet_b0 (1000 classes)", "params": segment.param.numel(), "optimizer": "adamw",
           "s": {k: quantiles(v) for k, v in samples.items()}}
    out["speedup_vs"] = {k: out["s"][k]["median"] / out["s"]["arena"]["median"] for k in samples if k != "arena"}
    return out


# %% report ------------------------------------------------------------------------------------------------
def summarize(result: dict) -> list[dict]:
    """One row per target: name, value, target, met."""
    rows = []
    tr, opt, sw = result.get("training"), result.get("optimizer"), result.get("switch")
    if tr:
        a = tr["train_ratio"]
        rows.append({"target": "(a) base-alone img/s / plain loop img/s", "value": a["total"],
                     "spread": (a["p20"], a["p80"]), "want": ">= 0.97", "met": a["total"] >= TARGETS["train_ratio"]})
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
    if opt:
        rows.append({"target": "(b) torch.optim foreach step / arena step (b0)", "value": opt["speedup_vs"]["foreach"],
                     "spread": None, "want": ">= 1.5", "met": opt["speedup_vs"]["foreach"] >= TARGETS["optimizer_speedup"]})
    if sw:
        s = sw[sw["backend"]]["s"]["median"]
        steps = {str(tr["batch_size"]): tr["step_s"]} if tr else {}
        steps |= {b: {m: {"median": v} for m, v in x["step_s"].items()} for b, x in sw.get("larger_steps", {}).items()}
        for batch_size, step_s in steps.items():
            for m in ("base", "motivated"):
                frac = s / step_s[m]["median"]
                sw[f"fraction_of_{m}_step_batch{batch_size}"] = frac
                rows.append({"target": f"(c) {sw['backend']} switch / one {m} step, batch {batch_size}", "value": frac,
                             "spread": None, "want": "<= 0.01", "met": frac <= TARGETS["switch_fraction"]})
    return rows


def print_report(result: dict, rows: list[dict]) -> None:
    m = result["machine"]
    print(f"\n{m['machine']}, {m['device']}, torch {m['torch']} ({m['torch_threads']} threads), commit {m['commit']}"
          f"{' (dirty)' if m['dirty'] else ''}, {m['date']}, load average {result['loadavg']}")
    tr = result.get("training")
    if tr:
        print(f"\n{'variant':28} {'img/s median':>12} {'p20-p80':>17} {'switches/run':>12} {'motivated':>9}")
        for k, v in tr["variants"].items():
            q = v["images_per_sec"]
            print(f"{k:28} {q['median']:12.1f} {q['p20']:8.1f}-{q['p80']:<8.1f} "
                  f"{v.get('switches_per_run', ''):>12} {v.get('motivated_fraction', float('nan')):9.2f}")
        print("step ms (median): " + ", ".join(f"{k} {v['median'] * 1e3:.1f}" for k, v in tr["step_s"].items()))
        b = tr["variants"]["alternating"]["breakdown_s"]
        print(f"alternating run (median of {tr['rounds']}): wall {b['wall_s']:.3f} s = steps + switches "
              f"{b['switch_s'] * 1e3:.1f} ms + fit() before the first step {b['prologue_s'] * 1e3:.1f} ms "
              f"+ rest {b['rest_s'] * 1e3:.1f} ms")
    opt = result.get("optimizer")
    if opt:
        print(f"\noptimizer step, {opt['model']}, {opt['params']} params: " + ", ".join(
            f"{k} {v['median'] * 1e3:.2f} ms" for k, v in opt["s"].items()))
    sw = result.get("switch")
    if sw:
        print(f"\nswitch ({sw['bytes'] / 1e6:.1f} MB moved): floor {sw['floor_s']['median'] * 1e3:.2f} ms; " + ", ".join(
            f"{b} {sw[b]['s']['median'] * 1e3:.2f} ms ({sw[b]['x_floor']:.2f}x floor, {sw[b]['gb_per_s']:.1f} GB/s)"
            for b in sw if isinstance(sw[b], dict) and "x_floor" in sw[b]))
    print(f"\n{'target':58} {'value':>8} {'p20-p80':>15} {'want':>8}  met")
    for r in rows:
        spread = f"{r['spread'][0]:.3f}-{r['spread'][1]:.3f}" if r["spread"] else ""
        print(f"{r['target']:58} {r['value']:8.4f} {spread:>15} {r['want']:>8}  {'yes' if r['met'] else 'NO'}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default=ARCH, help="the pair trained in (a), (c), (d), (e)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (every variant once per round)")
    p.add_argument("--steps", type=int, default=12, help="batches per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per fit() (a whole short run)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--compile", default="none", help="comma-separated: none, default, reduce-overhead, max-autotune")
    p.add_argument("--repeats", type=int, default=30, help="optimizer steps / switches timed")
    p.add_argument("--switch-batch-sizes", default="128",
                   help="comma-separated batch sizes at which (c) is also measured ('' to skip)")
    p.add_argument("--parts", default="training,switch,optimizer", help="comma-separated subset to run")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    result: dict = {"machine": machine_info(device), "arch": args.arch, "num_classes": NUM_CLASSES,
                    "args": vars(args), "targets": TARGETS}
    load_before = os.getloadavg()[0]
    pair = None
    if "training" in parts:
        result["training"], pair = bench_training(args, device)
    if "switch" in parts:
        if pair is None:
            pair = fm.MotivatedPair.from_arch(args.arch, num_classes=NUM_CLASSES).to(device)
            pair.set_state_rows(2)
        result["switch"] = bench_switch(pair, device, args.repeats)
        if args.switch_batch_sizes:
            result["switch"]["larger_steps"] = bench_larger_steps(args, device, pair)
    if "optimizer" in parts:
        result["optimizer"] = bench_optimizer(device, args.repeats)
    result["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["summary"] = summarize(result)
    print_report(result, result["summary"])
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=1, default=float))
        os.replace(tmp, path)
    return result


if __name__ == "__main__":
    main()
