"""What augmentation costs in training: images/sec of the trainer (Algorithm 1, streak:2) on the tensor loader
with crop + flip only, and with recipe V's augmentations on top (RandAugment rand-m9-n2-mstd0.5, random
erasing 0.25, Mixup 0.8, CutMix 1.0, label smoothing 0.1), measured interleaved in one process as a ratio.

Usage: python benchmarks/augment_cost.py [--arch resnet20:resnet32] [--img-size 32] [--batch-size 64]
       [--steps 20] [--rounds 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import time

import torch
from _common import DEVICE, NUM_CLASSES, machine_info, make_loader, quantiles, sync, write_json

import fastmotive as fm
from fastmotive.config import settings
from fastmotive.data import TrainAugment

RECIPE_V = dict(aa="rand-m9-n2-mstd0.5", reprob=0.25, mixup=0.8, cutmix=1.0, smoothing=0.1)


def trainer_for(arch: str, smoothing: float) -> fm.Trainer:
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch(arch, num_classes=NUM_CLASSES).to(DEVICE)
    return fm.Trainer(pair, opt="adamw", sched="constant", warmup_epochs=0, condition="streak:2",
                      smoothing=smoothing, no_progress=True, log_interval=10**9)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet20:resnet32")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    loader = make_loader(args.steps, args.batch_size, args.img_size, DEVICE)
    config = settings.replace(settings.TrainConfig(), **RECIPE_V)
    runs = {"crop + flip": (loader, trainer_for(args.arch, 0.0)),
            "recipe V augmentation": (TrainAugment.from_config(config, NUM_CLASSES).wrap(loader),
                                      trainer_for(args.arch, RECIPE_V["smoothing"]))}
    for batches, trainer in runs.values():   # warm-up epoch, untimed
        trainer.fit(batches, epochs=1)
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):   # interleaved: both see the same machine load
        for name, (batches, trainer) in runs.items():
            sync()
            t0 = time.perf_counter()
            trainer.fit(batches, epochs=trainer.state.epoch + 1)
            sync()
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - t0))
    result = {"machine": machine_info(DEVICE), "args": vars(args), "augmentation": RECIPE_V,
              "images_per_sec": {name: quantiles(r) for name, r in rates.items()}}
    plain, augmented = (statistics["median"] for statistics in result["images_per_sec"].values())
    result["ratio_augmented_to_plain"] = augmented / plain
    print(f"{args.arch} at {args.img_size}px, batch {args.batch_size}, {DEVICE}:")
    for name, q in result["images_per_sec"].items():
        print(f"  {name:24} {q['median']:8.1f} images/s (p20 {q['p20']:.1f}, p80 {q['p80']:.1f})")
    print(f"  augmented / plain: {result['ratio_augmented_to_plain']:.3f}")
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
