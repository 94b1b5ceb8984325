"""Which families should train channels-last by default? (`Family.channels_last`, ``--channels-last auto``)

For each model: one training step (forward, backward, the arena AdamW step) and one evaluation forward, per
image, in three layouts, interleaved in a rotating order:
- ``contiguous``: NCHW inputs and weights (``--channels-last off``);
- ``fastmotive``: what ``--channels-last on`` does: channels-last inputs, and the layout-free convolution
  weights (1x1, depthwise) re-strided in place in the arena (`MotivatedPair.set_channels_last`); the others stay
  contiguous;
- ``timm``: the whole model converted with ``model.to(memory_format=torch.channels_last)`` (what timm's
  ``--channels-last`` does), for reference: a pair's arena cannot hold weights in another byte order.

Usage:  python benchmarks/channels_last.py --json benchmarks/results/channels_last.json
        [--models efficientnet_b0,resnet18] [--img-size 32] [--batch 64] [--repeats 5]
Run it with the thread count a training run uses (OMP_NUM_THREADS).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import machine_info, write_json

import fastmotive as fm

MODELS = ("efficientnet_b0", "efficientnet_b2", "resnet20", "resnet18", "vit_tiny_patch16_224")
LAYOUTS = ("contiguous", "fastmotive", "timm")


def build(name: str, layout: str, img_size: int):
    """(train step, evaluation forward) of `name` as a single-model pair's Trainer runs them, in `layout`."""
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch(name, num_classes=10, img_size=img_size)
    model = pair.base
    if layout == "timm":   # weights in channels-last byte order: a copy outside the arena
        model = model.to(memory_format=torch.channels_last)
        # the kernel the arena's AdamW runs (fastmotive.optim.torch_ports.AdamW), so only the layout differs
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def step(x, y):
            model.train()
            optimizer.zero_grad()
            F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
            optimizer.step()
    else:
        trainer = fm.Trainer(pair, optimizer="adamw", lr=1e-3,
                             channels_last="on" if layout == "fastmotive" else "off")

        def step(x, y):
            trainer.step_fn("base", x, y, 1e-3, 0)

    @torch.inference_mode()
    def evaluate(x):
        model.eval()
        model(x.contiguous(memory_format=torch.channels_last) if layout == "timm" else x)
    return step, evaluate


def per_image_ms(fn, args_, batch: int, rounds: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn(*args_)
    return (time.perf_counter() - start) / (rounds * batch) * 1e3


def bench_model(name: str, args) -> dict:
    x, y = torch.randn(args.batch, 3, args.img_size, args.img_size), torch.randint(0, 10, (args.batch,))
    runs = {layout: build(name, layout, args.img_size) for layout in LAYOUTS}
    times = {layout: {"train": [], "eval": []} for layout in LAYOUTS}
    for step, evaluate in runs.values():   # warm-up: first calls allocate and pick kernels
        step(x, y)
        evaluate(x)
    for r in range(args.repeats):
        for layout in LAYOUTS[r % 3:] + LAYOUTS[:r % 3]:
            step, evaluate = runs[layout]
            times[layout]["train"].append(per_image_ms(step, (x, y), args.batch))
            times[layout]["eval"].append(per_image_ms(evaluate, (x,), args.batch))
    medians = {layout: {k: statistics.median(v) for k, v in t.items()} for layout, t in times.items()}
    base = medians["contiguous"]
    return {"model": name, "ms_per_image": medians,
            "speedup": {layout: {k: base[k] / m[k] for k in m} for layout, m in medians.items()},
            "auto": fm.families.family_of(name).channels_last}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    rows = [bench_model(name.strip(), args) for name in args.models.split(",")]
    print(f"{'model':22} {'auto':5} " + " ".join(f"{lay + ' ' + k:>16}" for lay in LAYOUTS[1:] for k in ("train", "eval")))
    for row in rows:
        print(f"{row['model']:22} {'on' if row['auto'] else 'off':5} " + " ".join(
            f"{row['speedup'][lay][k]:15.2f}x" for lay in LAYOUTS[1:] for k in ("train", "eval")))
    result = {"config": vars(args), "threads": torch.get_num_threads(), "rows": rows,
              "machine": machine_info(torch.device("cpu"))}
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
