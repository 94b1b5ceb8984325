"""Data-parallel training on this machine: step time and images/sec for 1 and 2 processes, the gradient
all-reduce's share of a step, and the arena's one flat all-reduce against DistributedDataParallel.

Variants (each process: 1 thread, gloo over localhost; resnet20:resnet32 at 32 px, batch 32 per process, SGD
momentum 0.9, no weight decay; the first half of the timed steps trains the base, the second the motivated
model, without a switch so that the baseline needs no copy plan):

- ``single``: one process, no collective (the reference for the throughput).
- ``independent``: two processes training at once with no collective at all: what the machine itself allows
  two processes (the cores are shared with other work), the bound for every 2-process variant.
- ``arena``: forward, backward, `Distributed.agree` (4 float64 per rank), `Distributed.average_gradients`: ONE
  synchronous all-reduce of the active model's gradient segment (a 1-D view of the arena), the arena optimizer.
- ``arena_overlap``: the same segment all-reduced in 4 buckets, each started from a post-accumulate-grad hook
  as soon as backward has filled it (DDP's overlap, on the arena's contiguous segment); waited before the step.
- ``ddp``: each model a plain module wrapped in its own DistributedDataParallel (gradient_as_bucket_view=True,
  broadcast_buffers=False: per-rank BatchNorm statistics as in the arena), torch.optim.SGD (foreach=False, the
  arena SGD's reference); the same `agree` for the condition.

Every variant of 2 processes trains the same global batches from the same initial weights; the benchmark
asserts that arena, arena_overlap and ddp end with bitwise the same parameters and BatchNorm buffers.
Variants run interleaved for `--rounds` rounds; ``step_ms`` is the median over rounds of each round's median
step, ``step_ms_p10`` the 10th percentile of all steps (the least disturbed, on a shared machine).

    python benchmarks/distributed.py --json benchmarks/results/distributed.json
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _common import machine_info, quantiles, write_json

import fastmotive as fm
from fastmotive.distributed import Distributed
from fastmotive.families import parse_arch
from fastmotive.optim import create_optimizer

LR, MOMENTUM = 0.05, 0.9
MODELS = ("base", "motivated")


class OverlappedAverager:
    """The segment's gradient all-reduced in `buckets` contiguous pieces, each launched (async) by the
    post-accumulate-grad hook of its last parameter to be filled, in a fixed order on every rank."""

    def __init__(self, pair, name: str, world: int, buckets: int = 4):
        segment, model = pair.segment(name), pair.model(name)
        self.grad, self.world = segment.grad, world
        slots = list(segment.slots)
        per = -(-len(slots) // buckets)
        # backward fills the last layers first: bucket 0 holds the last slots and is launched first
        groups = [slots[max(0, len(slots) - (i + 1) * per): len(slots) - i * per] for i in range(buckets)]
        groups = [g for g in groups if g]
        starts = [g[0].offset for g in groups]
        self.ranges = [(lo, starts[i - 1] if i else segment.grad.numel()) for i, lo in enumerate(starts)]
        self.sizes = [len(g) for g in groups]
        self.left = list(self.sizes)
        self.works, self.next = [], 0
        for i, group in enumerate(groups):
            for slot in group:
                model.get_parameter(slot.name).register_post_accumulate_grad_hook(self._hook(i))

    def _hook(self, bucket: int):
        def hook(_param):
            self.left[bucket] -= 1
            while self.next < len(self.ranges) and self.left[self.next] == 0:
                self._launch()
        return hook

    def _launch(self) -> None:
        lo, hi = self.ranges[self.next]
        self.works.append(dist.all_reduce(self.grad[lo:hi], async_op=True))
        self.next += 1

    def finish(self) -> None:
        while self.next < len(self.ranges):   # a parameter backward did not reach
            self._launch()
        for work in self.works:
            work.wait()
        self.grad.div_(self.world)
        self.works, self.next, self.left = [], 0, list(self.sizes)


def global_batch(step: int, world: int, rank: int, batch: int, img_size: int):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(batch * world, 3, img_size, img_size, generator=g)
    y = torch.randint(0, 10, (batch * world,), generator=g)
    rows = slice(rank * batch, (rank + 1) * batch)
    return x[rows], y[rows]


def build(variant: str, world: int, args):
    """The pair (its arena holds the weights every variant starts from), the forward modules and optimizers."""
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch(args.arch, num_classes=10)
    pair.set_state_rows(1)
    if variant == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        family, *names = parse_arch(args.arch)   # plain modules, outside any arena
        plain = {m: family.build(n, num_classes=10) for m, n in zip(MODELS, names)}
        for m in MODELS:
            plain[m].load_state_dict(pair.model(m).state_dict())
        with warnings.catch_warnings():   # broadcast_buffers=False is what keeps per-rank statistics
            warnings.simplefilter("ignore", FutureWarning)
            forward = {m: DDP(plain[m], gradient_as_bucket_view=True, broadcast_buffers=False) for m in MODELS}
        opts = {m: torch.optim.SGD(plain[m].parameters(), lr=LR, momentum=MOMENTUM, foreach=False)
                for m in MODELS}
        return plain, forward, opts, None
    models = {m: pair.model(m) for m in MODELS}
    opts = {m: create_optimizer("momentum", pair.segment(m), lr=LR, momentum=MOMENTUM, weight_decay=0.0)
            for m in MODELS}
    overlap = {m: OverlappedAverager(pair, m, world) for m in MODELS} if variant == "arena_overlap" else None
    return models, models, opts, (pair, overlap)


def collectives_alone(group: Distributed, pair, rounds: int) -> dict:
    """The collectives' own cost, the ranks lined up by a barrier first (in a step, the first collective also
    absorbs the ranks' skew): the segment all-reduce per model, and agree."""
    out = {}
    for m in MODELS:
        grad, times = pair.segment(m).grad.clone(), []
        for _ in range(rounds):
            group.barrier()
            t0 = time.perf_counter()
            group.average_gradients(grad)
            times.append(time.perf_counter() - t0)
        out[m] = times
    times = []
    for step in range(rounds):
        group.barrier()
        t0 = time.perf_counter()
        group.agree(1.0, "base", step)
        times.append(time.perf_counter() - t0)
    out["agree"] = times
    return out


def worker(rank: int, world: int, port: int, variant: str, args, out: str) -> None:
    torch.set_num_threads(1)
    try:
        group = (Distributed.init(rank, world, init_method=f"tcp://127.0.0.1:{port}", timeout_s=120)
                 if world > 1 and variant != "independent" else Distributed.single())
        models, forward, opts, arena = build(variant, world, args)
        steps = args.warmup + args.steps
        times, reduce_s, agree_s = {m: [] for m in MODELS}, [], []
        for m in MODELS:
            for step in range(steps):
                x, y = global_batch(step + (steps if m == "motivated" else 0), world, rank, args.batch_size,
                                    args.img_size)
                t0 = time.perf_counter()
                opts[m].zero_grad()
                loss = F.cross_entropy(forward[m](x), y)
                loss.backward()
                t1 = time.perf_counter()
                group.agree(loss, m, step)
                t2 = time.perf_counter()
                if variant == "arena":
                    group.average_gradients(arena[0].segment(m).grad, step)
                elif variant == "arena_overlap":
                    arena[1][m].finish()
                t3 = time.perf_counter()
                if variant == "ddp":
                    opts[m].step()
                else:
                    opts[m].step(LR, step + 1)
                t4 = time.perf_counter()
                if step >= args.warmup:
                    times[m].append(t4 - t0)
                    reduce_s.append(t3 - t2)
                    agree_s.append(t2 - t1)
        final = {m: {k: v.detach().clone() for k, v in models[m].state_dict().items()} for m in MODELS}
        alone = collectives_alone(group, arena[0], args.steps) if variant == "arena" else None
        torch.save({"times": times, "reduce_s": reduce_s, "agree_s": agree_s, "final": final, "alone": alone},
                   Path(out) / f"{variant}-{world}-{rank}.pt")
        os._exit(0)
    except BaseException:
        (Path(out) / f"{variant}-{world}-{rank}.err").write_text(traceback.format_exc())
        os._exit(1)


def run_variant(variant: str, world: int, args, folder: Path) -> list[dict]:
    ctx = multiprocessing.get_context("fork")   # the parent imported torch and fastmotive once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=worker, args=(r, world, port, variant, args, str(folder))) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(900)
    errors = [f.read_text() for f in folder.glob(f"{variant}-{world}-*.err")]
    if errors or any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"{variant} x{world} failed:\n" + "\n".join(errors))
    return [torch.load(folder / f"{variant}-{world}-{r}.pt") for r in range(world)]


def same_weights(a: dict, b: dict) -> tuple[bool, float]:
    worst, equal = 0.0, True
    for m in MODELS:
        for k, v in a[m].items():
            w = b[m][k]
            equal &= torch.equal(v, w)
            if v.is_floating_point():
                worst = max(worst, (v - w).abs().max().item())
    return equal, worst


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def summarize(rounds: dict, plan, batch: int) -> dict:
    summary = {}
    for variant, world in plan:
        per_round = {m: [statistics.median(res[0]["times"][m]) for res in rounds[variant]] for m in MODELS}
        pooled = {m: [t for res in rounds[variant] for t in res[0]["times"][m]] for m in MODELS}
        step_s = {m: statistics.median(per_round[m]) for m in MODELS}
        low_s = {m: _percentile(pooled[m], 10) for m in MODELS}   # the least disturbed steps
        reduce = [t for res in rounds[variant] for t in res[0]["reduce_s"]]
        agree = [t for res in rounds[variant] for t in res[0]["agree_s"]]
        summary[variant] = {
            "processes": world,
            "step_ms": {m: step_s[m] * 1e3 for m in MODELS},
            "step_ms_p10": {m: low_s[m] * 1e3 for m in MODELS},
            "step_ms_rounds": {m: quantiles([t * 1e3 for t in per_round[m]]) for m in MODELS},
            "images_per_s": {m: world * batch / step_s[m] for m in MODELS},
            "images_per_s_p10": {m: world * batch / low_s[m] for m in MODELS},
            "allreduce_wait_ms": {"median": statistics.median(reduce) * 1e3, "p10": _percentile(reduce, 10) * 1e3},
            "agree_ms": {"median": statistics.median(agree) * 1e3, "p10": _percentile(agree, 10) * 1e3},
            "allreduce_share": {m: statistics.median(reduce) / step_s[m] for m in MODELS},
        }
    if "arena" in rounds:
        alone = {k: [t for res in rounds["arena"] for t in res[0]["alone"][k]] for k in (*MODELS, "agree")}
        summary["collectives_alone_ms"] = {k: {"median": statistics.median(v) * 1e3, "p10": _percentile(v, 10) * 1e3}
                                           for k, v in alone.items()}
    return summary


def ratios_of(summary: dict) -> dict:
    """Step time of the arena variants over DDP's, and images/s of 2 processes over 1."""
    ratios = {}
    for stat in ("step_ms", "step_ms_p10"):
        for v in ("arena", "arena_overlap"):
            if v in summary and "ddp" in summary:
                ratios[f"{v}_over_ddp_{stat}"] = {m: summary[v][stat][m] / summary["ddp"][stat][m] for m in MODELS}
        for v in ("independent", "arena"):   # images/s of 2 processes over 1
            if "single" in summary and v in summary:
                ratios[f"throughput_{v}_2_over_1_{stat}"] = {
                    m: 2 * summary["single"][stat][m] / summary[v][stat][m] for m in MODELS}
        if "independent" in summary and "arena" in summary:   # what the collectives add to a step
            ratios[f"arena_over_independent_{stat}"] = {
                m: summary["arena"][stat][m] / summary["independent"][stat][m] for m in MODELS}
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20:resnet32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per model and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["single", "independent", "arena", "arena_overlap", "ddp"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plan = [(v, 1 if v == "single" else 2) for v in args.variants]
    rounds = {v: [] for v, _ in plan}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for variant, world in plan:
                results = run_variant(variant, world, args, Path(tmp))
                rounds[variant].append(results)
                step = statistics.median(t for m in MODELS for t in results[0]["times"][m])
                print(f"round {r} {variant:14s} x{world}: step {step * 1e3:7.1f} ms  load {os.getloadavg()[0]:.2f}",
                      flush=True)
    weights = {}
    if "arena" in rounds:
        for variant, world in plan:
            if world == 2 and variant not in ("arena", "independent"):
                for res_a, res_b in zip(rounds["arena"], rounds[variant]):
                    equal, worst = same_weights(res_a[0]["final"], res_b[0]["final"])
                    assert equal, f"{variant} ended with other weights than arena (max |diff| {worst})"
                weights[variant] = {"bitwise_equal_to_arena": equal, "max_abs_diff": worst}
    summary = summarize(rounds, plan, args.batch_size)
    ratios = ratios_of(summary)
    pair = fm.MotivatedPair.from_arch(args.arch, num_classes=10)
    result = {"machine": machine_info(torch.device("cpu")), "load_before": load_before, "load_after": os.getloadavg(),
              "settings": {**vars(args), "threads_per_process": 1, "backend": "gloo",
                           "segment_elements": {m: pair.segment(m).grad.numel() for m in MODELS}},
              "variants": summary, "ratios": ratios, "weights": weights}
    print(f"collectives alone (ms): {summary.get('collectives_alone_ms')}")
    for variant, row in summary.items():
        if variant == "collectives_alone_ms":
            continue
        print(f"{variant:14s} step ms {row['step_ms']}  p10 {row['step_ms_p10']}  all-reduce wait "
              f"{row['allreduce_wait_ms']}  agree {row['agree_ms']}")
    print(f"ratios {ratios}\nweights {weights}")
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
