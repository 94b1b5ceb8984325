"""What BatchNorm calibration costs: one calibration of both models (``--bn-calibrate N`` images) against one
training epoch, as a share, for a digits-sized (1437 images) and a CIFAR-sized (50 000 images) training split.

Count first: a calibration is N forward passes of each model in no-grad mode; an epoch is `train size` images of
forward + backward + optimizer step, mostly on the base. The share is measured from the median time of one
base training step and one calibration, interleaved in one run (efficientnet_b0:b2, 32 px, batch 32).

    python benchmarks/bn_calibration.py --json benchmarks/results/bn_calibration.json
"""
from __future__ import annotations

import argparse
import time

from _common import (ARCH, DEVICE, LR, WEIGHT_DECAY, build_pair_and_plain, machine_info, make_loader,
                     quantiles, sync, write_json)

import fastmotive as fm
from fastmotive.training.evaluation import CalibrationBatches, calibrated

SPLITS = {"digits": 1437, "cifar": 50_000}


def step_time(trainer, images, labels, rounds: int) -> list[float]:
    step = trainer.default_step()
    times = []
    for i in range(rounds):
        sync()
        t0 = time.perf_counter()
        step("base", images, labels, LR, i)
        sync()
        times.append(time.perf_counter() - t0)
    return times


def calibration_time(pair, batches, images: int, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        sync()
        t0 = time.perf_counter()
        for name in ("base", "motivated"):
            with calibrated(pair.model(name), batches, images):
                pass
        sync()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=ARCH, help="the pair calibrated and trained")
    parser.add_argument("--images", type=int, nargs="+", default=[256, 512, 2000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    pair, _ = build_pair_and_plain(args.arch, DEVICE)
    trainer = fm.Trainer(pair, optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY, progress=False)
    loader = make_loader(max(args.images) // args.batch_size + 1, args.batch_size, args.img_size, DEVICE)
    images, labels = next(iter(loader.epoch_batches(0)))
    step_time(trainer, images, labels, 3)   # warm-up
    steps, calibrations = [], {n: [] for n in args.images}
    for _ in range(args.rounds):   # interleaved, so drift hits both alike
        steps += step_time(trainer, images, labels, 3)
        for n in args.images:
            calibrations[n] += calibration_time(pair, CalibrationBatches(loader), n, 1)
    step_s = quantiles(steps)["median"]
    result = {"machine": machine_info(DEVICE), "arch": args.arch, "batch_size": args.batch_size,
              "img_size": args.img_size, "base_step_s": quantiles(steps), "calibration_s": {}, "share_of_epoch": {}}
    for n, samples in calibrations.items():
        result["calibration_s"][n] = quantiles(samples)
        for split, size in SPLITS.items():
            used = min(n, size)
            epoch_s = size // args.batch_size * step_s
            share = quantiles(samples)["median"] * used / n / epoch_s
            result["share_of_epoch"][f"{split}@{n}"] = share
            print(f"--bn-calibrate {n:5d} on {split:6} ({size} train images): calibration "
                  f"{quantiles(samples)['median'] * used / n:6.2f} s, epoch {epoch_s:7.1f} s, share {share:6.1%}")
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
