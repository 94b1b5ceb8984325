"""Does the arena optimizer step beat torch.optim? Issue 5's target (b), measured interleaved.

One AdamW step (lr 1e-3, weight decay 0.05 with timm's grouping) of the arena optimizer on efficientnet_b0's
segment (1000 classes, 5.3 M parameters) against ``torch.optim.AdamW`` on the same model with ``foreach=True``
(the target: at least 1.5x faster on a CPU), and ``foreach=False`` and ``fused=True`` for reference. Each
repeat runs every candidate once, in a rotating order, so drift and background load hit them alike.

Usage:  python benchmarks/optimizer_step.py --json benchmarks/results/optimizer_step.json [--repeats 30]
Last result (2026-11-27, 2-core x86_64 CPU, no GPU, torch 2.14.1, 2 threads, commit 93e7d01, then part of
benchmarks/overhead.py; docs/benchmarks.md, "Framework overhead"): foreach / arena = 1.70x (11.9 vs 20.2 ms).
With AdamW's fused kernel (2026-12-07, the same CPU, 1 thread, 20 repeats): arena 3.66 ms, foreach 16.39,
single-tensor 15.26, torch fused 5.03: foreach / arena = 4.48x.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from _common import LR, WEIGHT_DECAY, machine_info, quantiles, sync, write_json

import fastmotive as fm

TARGET = 1.5   # torch.optim foreach step time / arena step time


def candidates(device: torch.device) -> tuple[dict, int]:
    """{name: one optimizer step} for the arena AdamW and torch.optim's variants on efficientnet_b0, with the
    same gradients; and the parameter count."""
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
        groups = timm.optim.param_groups_weight_decay(model, weight_decay=WEIGHT_DECAY)
        return torch.optim.AdamW(groups, lr=LR, **kw)
    step = [0]

    def arena_step():
        step[0] += 1
        arena.step(LR, step[0])
    steps = {"arena": arena_step, "foreach": torch_adamw(foreach=True).step,
             "single_tensor": torch_adamw(foreach=False).step}
    try:
        steps["fused"] = torch_adamw(fused=True).step
        steps["fused"]()
    except (RuntimeError, ValueError) as e:   # fused=True is not supported on every device
        print(f"torch fused AdamW unavailable here ({e})")
        steps.pop("fused")
    return steps, segment.param.numel()


def bench_optimizer(device: torch.device, repeats: int) -> dict:
    steps, params = candidates(device)
    samples: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():   # warm-up: scratch tensors allocated, pages touched
        for _ in range(3):
            fn()
    sync(device)
    names = list(steps)
    for i in range(repeats):
        for k in names[i % len(names):] + names[:i % len(names)]:
            t0 = time.perf_counter()
            steps[k]()
            sync(device)
            samples[k].append(time.perf_counter() - t0)
    out = {"model": "efficientnet_b0 (1000 classes)", "params": params, "optimizer": "adamw",
           "s": {k: quantiles(v) for k, v in samples.items()}}
    arena = out["s"]["arena"]["median"]
    out["speedup_vs"] = {k: out["s"][k]["median"] / arena for k in samples if k != "arena"}
    out["target"] = {"want": f">= {TARGET}", "met": out["speedup_vs"]["foreach"] >= TARGET}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="PATH", help="write the result as JSON")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=30, help="steps timed per candidate")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"machine": machine_info(device), "args": vars(args), "loadavg_before": os.getloadavg()[0]}
    result["optimizer"] = bench_optimizer(device, args.repeats)
    opt = result["optimizer"]
    print(f"optimizer step, {opt['model']}, {opt['params']} params: " + ", ".join(
        f"{k} {v['median'] * 1e3:.2f} ms" for k, v in opt["s"].items()))
    print(f"(b) torch.optim foreach step / arena step: {opt['speedup_vs']['foreach']:.2f}x "
          f"(want >= {TARGET}): {'met' if opt['target']['met'] else 'NOT met'}")
    if args.json:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
