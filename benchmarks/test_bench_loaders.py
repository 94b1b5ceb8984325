"""Loader images/sec over a full training pass: 4096 CIFAR-shaped uint8 images in memory, batch 128, pad-4 random
crop + flip, normalised float32 batches on the benchmark device; `tensor`, `torch` (a DataLoader with 2
workers) and `dali` where NVIDIA DALI imports (skipped, with the reason, where it does not).

Before timing, each loader's first batch of epoch 0 is checked against the tensor loader's (the loaders share
one sampling plan, so the batches agree to float rounding). The CLI `benchmarks/loaders.py` measures the
same on a larger set and on JPEG folders.

Last result (2026-11-27, 2-core x86_64 CPU, torch 2.14.1, DALI 2.4.0 CPU): tensor 384 k img/s, DALI 108 k, torch
DataLoader (2 workers) 20 k (docs/benchmarks.md).
"""
import functools

import numpy as np
import pytest
import torch
from _common import DEVICE, median_s, sync

from fastmotive.data import DaliLoader, TensorLoader, TorchLoader, dali_available
from fastmotive.data.datasets.readers import CIFAR10_MEAN, CIFAR10_STD, ArraySplit
from fastmotive.testing import random_images

IMAGES, BATCH = 4096, 128


@functools.cache
def split() -> ArraySplit:
    rng = np.random.default_rng(0)
    return ArraySplit(random_images(IMAGES, 3, 32, rng), rng.integers(0, 10, IMAGES).astype(np.int64))


def make(name: str):
    common = {"batch_size": BATCH, "train": True, "seed": 0, "flip": True, "mean": CIFAR10_MEAN,
              "std": CIFAR10_STD, "device": DEVICE}
    if name == "tensor":
        return TensorLoader(split(), **common)
    if name == "torch":
        return TorchLoader(split(), **common, num_workers=2)
    if not dali_available():
        pytest.skip("NVIDIA DALI does not import here")
    return DaliLoader(split(), **common, num_threads=2)


@pytest.mark.parametrize("name", ["tensor", "dali", "torch"])
def test_loader_pass(benchmark, name):
    benchmark.group = f"loaders 32x32 batch {BATCH}"
    loader = make(name)
    x, y = next(iter(loader.epoch_batches(0)))   # correctness, outside the timed calls
    want_x, want_y = next(iter(make("tensor").epoch_batches(0)))
    assert x.shape == (BATCH, 3, 32, 32) and x.dtype == torch.float32 and x.device.type == DEVICE.type
    torch.testing.assert_close(x, want_x, atol=1e-5, rtol=0)
    assert torch.equal(y, want_y)
    counts = []

    def one_pass():
        n = 0
        for _, labels in loader.epoch_batches(len(counts) + 1):
            n += len(labels)
        sync()
        counts.append(n)
    benchmark.pedantic(one_pass, rounds=5, warmup_rounds=1)
    assert counts and all(n == IMAGES // BATCH * BATCH for n in counts)
    median = median_s(benchmark)
    benchmark.extra_info.update(images_per_pass=IMAGES // BATCH * BATCH, device=str(DEVICE))
    if median:
        benchmark.extra_info["images_per_sec"] = round(IMAGES // BATCH * BATCH / median)
