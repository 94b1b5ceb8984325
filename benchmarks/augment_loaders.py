"""Loader throughput with recipe V's training augmentation (issue 12): fastmotive's loaders + device augmentation
against timm's own pipeline.

Augmentation: RandAugment ``rand-m9-n2-mstd0.5``, random erasing 0.25 (``pixel``), Mixup 0.8 + CutMix 1.0
(switch 0.5, batch mode), label smoothing 0.1; flip 0.5. Data: synthetic CIFAR-shaped uint8 arrays (3x32x32, in
memory), read at 32 px and at 224 px (``--img-size 224``: upsampled after the crop).

Pipelines (same batch size, same worker count):
- ``tensor``: `TensorLoader` + `TrainAugment` (everything batched on the device: here the CPU, in the calling
  thread);
- ``torch``: `TorchLoader` with timm's PIL RandAugment per sample in its workers, then erasing and mixing on the
  device batch;
- ``dali``: `DaliLoader` (CPU pipeline) + `TrainAugment`, where NVIDIA DALI imports;
- ``timm``: what timm's train.py runs without its CUDA prefetcher: a torch ``DataLoader`` over a
  torchvision-style dataset of PIL images with ``timm.data.create_transform(size, is_training=True,
  auto_augment=..., re_prob=0.25, re_mode='pixel')`` (random-resized crop, flip, RandAugment, normalize,
  erasing), then ``timm.data.Mixup`` on the batch.

Each pipeline runs one warm-up pass, then ``--repeats`` timed full passes, interleaved (pass r of every
pipeline, then pass r + 1), so a load change on the shared machine hits all of them alike; the median and the
20th / 80th percentiles of images/sec are reported, and each median as a ratio to timm's.

    python benchmarks/augment_loaders.py --threads 1 --json benchmarks/results/augment_loaders.json

Last result (2026-11-30, 2-core x86_64 CPU shared with other jobs, no GPU; docs/data.md has the table): at 32 px
with one torch thread, tensor 4 491 img/s (6.5x timm's 689), dali 4 809 (7.0x), torch 652 (0.95x); at 224 px
tensor 342 (1.45x timm's 236), dali 261, torch 222.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # _common, also when loaded by path

from _common import write_json  # noqa: E402

from fastmotive.data import DaliLoader, TensorLoader, TorchLoader, TrainAugment, dali_available
from fastmotive.data.datasets.readers import CIFAR10_MEAN, CIFAR10_STD, ArraySplit
from fastmotive.testing import random_images

AA, REPROB, MIXUP, CUTMIX, SMOOTHING, CLASSES = "rand-m9-n2-mstd0.5", 0.25, 0.8, 1.0, 0.1, 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write the records as JSON")
    p.add_argument("--pipelines", default="tensor,torch,dali,timm", help="comma-separated pipelines to measure")
    p.add_argument("--sizes", default="32,224", help="comma-separated output sides")
    p.add_argument("--images-32", type=int, default=10240, help="images per pass at 32 px")
    p.add_argument("--images-224", type=int, default=512, help="images per pass at sizes above 32 px")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers / DALI threads")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per pipeline")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


class _TimmPipeline:
    """timm's train.py data path: PIL dataset + create_transform in a DataLoader, Mixup on the device batch."""

    def __init__(self, split: ArraySplit, size: int, batch_size: int, workers: int, device: torch.device):
        from timm.data import Mixup, create_transform
        transform = create_transform(size, is_training=True, auto_augment=AA, re_prob=REPROB, re_mode="pixel",
                                     mean=CIFAR10_MEAN, std=CIFAR10_STD)
        dataset = _PilDataset(split, transform)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=device.type == "cuda")
        self.mixup = Mixup(mixup_alpha=MIXUP, cutmix_alpha=CUTMIX, label_smoothing=SMOOTHING, num_classes=CLASSES)
        self.device = device

    def epoch_batches(self, epoch):
        for x, y in self.loader:
            yield self.mixup(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, split: ArraySplit, transform):
        self.images, self.labels, self.transform = split.images, split.labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i].transpose(1, 2, 0))), int(self.labels[i])


def make_pipeline(name: str, split: ArraySplit, size: int, args, device: torch.device):
    common = {"batch_size": args.batch_size, "train": True, "seed": 0, "flip": True, "mean": CIFAR10_MEAN,
              "std": CIFAR10_STD, "device": device, "img_size": size}
    augment = TrainAugment(CLASSES, aa=AA, reprob=REPROB, remode="pixel", mixup=MIXUP, cutmix=CUTMIX,
                           smoothing=SMOOTHING)
    if name == "tensor":
        return augment.wrap(TensorLoader(split, **common))
    if name == "torch":
        return augment.wrap(TorchLoader(split, **common, num_workers=args.workers, aa=AA))
    if name == "dali":
        return augment.wrap(DaliLoader(split, **common, num_threads=max(1, args.workers)))
    if name == "timm":
        return _TimmPipeline(split, size, args.batch_size, args.workers, device)
    raise SystemExit(f"--pipelines: unknown {name!r}; valid choices: tensor, torch, dali, timm")


def timed_pass(pipeline, epoch: int, device: torch.device) -> float:
    n = 0
    t0 = time.perf_counter()
    for images, _targets in pipeline.epoch_batches(epoch):
        n += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t0)


def measure(pipelines: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Images/sec of every pipeline: one warm-up pass each, then `repeats` interleaved timed passes."""
    for p in pipelines.values():
        timed_pass(p, 0, device)
    rates = {name: [] for name in pipelines}
    for r in range(repeats):
        for name, p in pipelines.items():
            rates[name].append(timed_pass(p, r + 1, device))
    return rates


def summarize(rates: list[float]) -> dict:
    q = statistics.quantiles(rates, n=5) if len(rates) > 1 else [rates[0]] * 4
    return {"images_per_sec": statistics.median(rates), "images_per_sec_p20": q[0], "images_per_sec_p80": q[3],
            "rates": rates}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = [n for n in args.pipelines.split(",") if n]
    if "dali" in names and not dali_available():
        print("dali: NVIDIA DALI does not import here; skipped")
        names.remove("dali")
    meta = {"device": str(device), "machine": f"{platform.machine()} {os.cpu_count()} cpus", "workers": args.workers,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "batch_size": args.batch_size,
            "augmentation": f"aa {AA}, reprob {REPROB} pixel, mixup {MIXUP}, cutmix {CUTMIX}, smoothing {SMOOTHING}",
            "date": datetime.date.today().isoformat()}
    records = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        n = args.images_32 if size <= 32 else args.images_224
        rng = np.random.default_rng(0)
        split = ArraySplit(random_images(n, 3, 32, rng), rng.integers(0, CLASSES, n).astype(np.int64))
        pipelines = {name: make_pipeline(name, split, size, args, device) for name in names}
        rates = measure(pipelines, args.repeats, device)
        for name in names:
            rec = {"pipeline": name, "img_size": size, "images_per_pass": n, **summarize(rates[name]), **meta}
            records.append(rec)
            print(f"{size:4d} px {name:7s} {rec['images_per_sec']:9.0f} img/s "
                  f"(p20 {rec['images_per_sec_p20']:.0f}, p80 {rec['images_per_sec_p80']:.0f})", flush=True)
        del pipelines  # stops the DataLoader workers before the next size
    print_table(records)
    if args.json:
        write_json(records, args.json)
    return records


def print_table(records: list[dict]) -> None:
    print(f"\n{'size':>4s} | {'pipeline':8s} | {'img/s (median)':>14s} | {'p20-p80':>15s} | {'vs timm':>7s}")
    base = {r["img_size"]: r["images_per_sec"] for r in records if r["pipeline"] == "timm"}
    for r in records:
        ratio = f"{r['images_per_sec'] / base[r['img_size']]:.2f}x" if r["img_size"] in base else "-"
        print(f"{r['img_size']:4d} | {r['pipeline']:8s} | {r['images_per_sec']:14.0f} | "
              f"{r['images_per_sec_p20']:6.0f}-{r['images_per_sec_p80']:<8.0f} | {ratio:>7s}")


if __name__ == "__main__":
    main()
