"""Random streams of the training augmentation, each a pure function of a few integers (seed, epoch, batch, ...).

Every random draw of the data pipeline comes from a generator seeded here, never from a stream that other code
also advances, so a batch is the same whether its epoch is read from the start or resumed at that batch, and the
caller's generators are untouched. Libraries that draw from a global generator (timm's `Mixup` uses numpy's, its
PIL RandAugment Python's `random` and numpy's, torchvision's AutoAugment torch's) run inside `global_rngs_seeded`,
which seeds those generators and puts their previous states back afterwards.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# Stream tags: the last word of a seed, so two uses of the same (seed, epoch, batch) never share a stream.
AUTO_AUGMENT, ERASING, ERASING_NOISE, MIXING, WORKER_AUGMENT = 1, 2, 3, 4, 5


def derive_seed(*words: int) -> int:
    """A 64-bit seed from non-negative integers, through numpy's SeedSequence (well mixed: neighbouring words
    give unrelated seeds)."""
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0])


def numpy_generator(*words: int) -> np.random.Generator:
    """``np.random.Generator(PCG64(SeedSequence(words)))``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(w) for w in words])))


def torch_generator(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` seeded from `words`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*words))
    return g


def sample_seeds(base: int, positions: np.ndarray) -> np.ndarray:
    """One 64-bit seed per position (uint64), splitmix64 of ``base + position``: cheap enough to give every
    sample of an epoch its own seed in the DataLoader's sampler."""
    with np.errstate(over="ignore"):
        z = np.uint64(base) + positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@contextmanager
def global_rngs_seeded(seed: int, torch_cpu: bool = False, restore: bool = True) -> Iterator[None]:
    """Seed Python's `random` and numpy's global generator (and with `torch_cpu` torch's CPU generator) with
    `seed` for the duration of the block, then restore their previous states. ``restore=False`` skips the
    restoring (numpy's state costs about 0.3 ms to save and put back) where no one else draws from them: a
    DataLoader worker process."""
    saved = (random.getstate(), np.random.get_state(),
             torch.random.get_rng_state() if torch_cpu else None) if restore else None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch_cpu:
        torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            if saved[2] is not None:
                torch.random.set_rng_state(saved[2])
