"""Loader benchmark (issue 4): images/sec of each loader over a full training pass (batch 128, training
augmentation: pad-4 random crop + flip for arrays, random-resized crop + flip for files).

Data: synthetic CIFAR-shaped uint8 arrays (3x32x32, in memory) and a generated folder of JPEGs (about
288x256, quality 90) read at 224 px. Each loader is warmed up with a full pass (workers started, pipeline
built, caches hot), then timed over ``--repeats`` full passes; we report the median and the 20th/80th
percentiles of images/sec, and the GB/s of float32 batches delivered. On CUDA the pass ends with a device
synchronize, so queued GPU work is counted.

Last result (2026-11-27, 2-core x86_64 CPU shared with other jobs, no GPU, torch 2.14.1, DALI 2.4.0 CPU
pipelines; medians of 5 passes; docs/data.md has the table): 32x32 arrays, torch DataLoader with 2 workers
10 576 img/s, dali 66 358 (6.3x), tensor 30 920 (2.9x; 111 332 = 9.8x with --threads 1); JPEG 224 px,
torch 245 img/s, dali 543 (2.2x).

    python benchmarks/loaders.py --json benchmarks/results/loaders.json
"""
from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # _common, also when loaded by path

from _common import write_json  # noqa: E402

from fastmotive.data import DaliLoader, TensorLoader, TorchLoader, dali_available
from fastmotive.data.datasets.readers import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD,
                                              ArraySplit, read_folder)
from fastmotive.testing import random_images, write_image_folder


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", metavar="PATH", help="write the records as JSON")
    p.add_argument("--loaders", default="tensor,dali,torch", help="comma-separated loaders to measure")
    p.add_argument("--data", default="array32,jpeg224", help="comma-separated: array32, jpeg224")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--array-images", type=int, default=20000, help="images in the 32x32 array set")
    p.add_argument("--jpeg-images", type=int, default=384, help="images in the JPEG folder")
    p.add_argument("--img-size", type=int, default=224, help="output side for the JPEG folder")
    p.add_argument("--workers", type=int, default=2, help="torch DataLoader workers / DALI threads")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=5, help="timed full passes per loader")
    return p.parse_args(argv)


def timed_pass(loader, epoch: int, device: torch.device) -> tuple[float, int]:
    n = 0
    t0 = time.perf_counter()
    for _images, labels in loader.epoch_batches(epoch):
        n += labels.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the last batches may still be in flight on the GPU
    return time.perf_counter() - t0, n


def measure(make, repeats: int, device: torch.device, out_bytes_per_image: int) -> dict:
    loader = make()
    timed_pass(loader, 0, device)  # warm-up: worker start, pipeline build, page cache
    rates = []
    for r in range(repeats):
        seconds, n = timed_pass(loader, r + 1, device)
        rates.append(n / seconds)
    q = statistics.quantiles(rates, n=5) if len(rates) > 1 else [rates[0]] * 4
    med = statistics.median(rates)
    return {"images_per_sec": med, "images_per_sec_p20": q[0], "images_per_sec_p80": q[3],
            "gb_per_sec": med * out_bytes_per_image / 1e9, "images_per_pass": n, "repeats": repeats}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaders = [name for name in args.loaders.split(",") if name]
    if "dali" in loaders and not dali_available():
        print("dali: NVIDIA DALI does not import here; skipped")
        loaders.remove("dali")
    common = {"batch_size": args.batch_size, "train": True, "seed": 0, "flip": True, "device": device}
    make = {"tensor": lambda split, **kw: TensorLoader(split, **common, **kw),
            "torch": lambda split, **kw: TorchLoader(split, **common, num_workers=args.workers, **kw),
            "dali": lambda split, **kw: DaliLoader(split, **common, num_threads=args.workers, **kw)}
    meta = {"device": str(device), "machine": f"{platform.machine()} {os.cpu_count()} cpus"
            + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "workers": args.workers,
            "batch_size": args.batch_size, "date": datetime.date.today().isoformat()}
    if dali_available():
        import nvidia.dali
        meta["dali"] = nvidia.dali.__version__
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data.split(","):
            if data == "array32":
                rng = np.random.default_rng(0)
                split = ArraySplit(random_images(args.array_images, 3, 32, rng),
                                   rng.integers(0, 10, args.array_images).astype(np.int64))
                kw, size = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}, 32
            elif data == "jpeg224":
                classes = 4
                write_image_folder(tmp, classes=classes, per_class=args.jpeg_images // classes, val_per_class=1,
                                   size=(288, 256))
                split = read_folder(Path(tmp)).train
                size = args.img_size
                kw = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "img_size": size}
            else:
                raise SystemExit(f"--data: unknown {data!r}; valid choices: array32, jpeg224")
            for name in loaders:
                if name == "tensor" and data != "array32":
                    continue  # the tensor loader holds arrays only
                factory = functools.partial(make[name], split, **kw)
                rec = {"loader": name, "data": data,
                       **measure(factory, args.repeats, device, 3 * size * size * 4), **meta}
                records.append(rec)
                print(f"{data:8s} {name:7s} {rec['images_per_sec']:10.0f} img/s "
                      f"(p20 {rec['images_per_sec_p20']:.0f}, p80 {rec['images_per_sec_p80']:.0f}) "
                      f"{rec['gb_per_sec']:6.3f} GB/s out", flush=True)
    print_table(records)
    if args.json:
        write_json(records, args.json)
    return records


def print_table(records: list[dict]) -> None:
    print(f"\n{'data':8s} | {'loader':7s} | {'device':6s} | {'img/s (median)':>14s} | {'p20-p80':>15s} | "
          f"{'vs torch':>8s}")
    base = {r["data"]: r["images_per_sec"] for r in records if r["loader"] == "torch"}
    for r in records:
        ratio = f"{r['images_per_sec'] / base[r['data']]:.2f}x" if r["data"] in base else "-"
        print(f"{r['data']:8s} | {r['loader']:7s} | {r['device']:6s} | {r['images_per_sec']:14.0f} | "
              f"{r['images_per_sec_p20']:6.0f}-{r['images_per_sec_p80']:<8.0f} | {ratio:>8s}")


if __name__ == "__main__":
    main()
