"""Shared by the pytest-benchmark suites: the benchmark device and its synchronisation."""
import os

import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def triton_timeable() -> bool:
    """The Triton switch is timed on CUDA only, never in the interpreter."""
    return DEVICE.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1"


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_s(benchmark) -> float | None:
    """The benchmark's median in seconds, or None when benchmarks are disabled (each function ran once)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else None
