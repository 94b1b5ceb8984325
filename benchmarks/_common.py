"""Shared by the benchmarks: the device and its synchronisation, quantiles and provenance, the training
setup (pair, synthetic loader, a plain PyTorch loop) and a Trainer whose steps and switches are timed."""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # fastmotive from this checkout

import fastmotive as fm  # noqa: E402
from fastmotive.data import TensorLoader  # noqa: E402
from fastmotive.data.datasets.readers import CIFAR10_MEAN, CIFAR10_STD, ArraySplit  # noqa: E402
from fastmotive.testing import random_images  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ARCH = "efficientnet_b0:b2"
NUM_CLASSES = 10
LR, WEIGHT_DECAY = 1e-3, 0.05
CONDITIONS = {"base": fm.Never, "motivated": fm.Always, "alternating": lambda: fm.LossStreak(k=2)}


# %% timing and provenance ---------------------------------------------------------------------------------
def triton_timeable() -> bool:
    """The Triton switch is timed on CUDA only, never in the interpreter."""
    return DEVICE.type == "cuda" and os.environ.get("TRITON_INTERPRET") != "1"


def sync(device: torch.device = DEVICE) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_s(benchmark) -> float | None:
    """The benchmark's median in seconds, or None when benchmarks are disabled (each function ran once)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else None


def quantiles(samples: list[float]) -> dict:
    """Median and 20th/80th percentiles."""
    if len(samples) == 1:
        return {"median": samples[0], "p20": samples[0], "p80": samples[0]}
    q = statistics.quantiles(samples, n=5, method="inclusive")
    return {"median": statistics.median(samples), "p20": q[0], "p80": q[3]}


def machine_info(device: torch.device) -> dict:
    def git(*args) -> str:
        return subprocess.run(["git", *args], check=False, capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    try:
        commit, dirty = git("rev-parse", "--short", "HEAD") or None, bool(git("status", "--porcelain",
                                                                              "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit, "dirty": dirty,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


def write_json(result, path: str | os.PathLike) -> None:
    """Write `result` atomically (a killed benchmark leaves the previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    os.replace(tmp, path)


# %% the training setup ------------------------------------------------------------------------------------
def build_pair_and_plain(arch: str, device: torch.device) -> tuple[fm.MotivatedPair, torch.nn.Module]:
    """The pair, and a plain copy of its base model in tensors of its own (same weights), on `device`."""
    torch.manual_seed(0)
    family, base_name, _ = fm.parse_arch(arch)
    pair = fm.MotivatedPair.from_arch(arch, num_classes=NUM_CLASSES).to(device)
    plain = family.build(base_name, num_classes=NUM_CLASSES).to(device)
    plain.load_state_dict(pair.base.state_dict())
    return pair, plain


def make_loader(steps: int, batch_size: int, img_size: int, device: torch.device) -> TensorLoader:
    """`steps` training batches of synthetic CIFAR-shaped images on `device` (the tensor loader)."""
    rng = np.random.default_rng(0)
    n = steps * batch_size
    split = ArraySplit(random_images(n, 3, img_size, rng), rng.integers(0, NUM_CLASSES, n).astype(np.int64))
    return TensorLoader(split, batch_size=batch_size, train=True, seed=0, flip=True, mean=CIFAR10_MEAN,
                        std=CIFAR10_STD, device=device)


class PlainLoop:
    """A plain hand-written PyTorch loop: its own timm model, torch.optim.AdamW (foreach), timm's groups."""

    def __init__(self, model: torch.nn.Module, foreach: bool = True):
        import timm.optim
        self.model = model
        groups = timm.optim.param_groups_weight_decay(model, weight_decay=WEIGHT_DECAY)
        self.optimizer = torch.optim.AdamW(groups, lr=LR, foreach=foreach)

    def step(self, images, labels) -> float:
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()   # a sync point, as the trainer's (it logs the loss)

    def run(self, loader, epochs: range) -> list[float]:
        self.model.train()
        return [self.step(images, labels) for epoch in epochs
                for images, labels in loader.epoch_batches(epoch)]


# %% fastmotive, with each step and switch timed -----------------------------------------------------------
class TimedStep:
    """A step function wrapping a trainer's default step; times each call per model (the call ends with
    loss.item(), so the device has finished the step)."""

    def __init__(self):
        self.inner = None   # the trainer's default step, set once the trainer exists
        self.times: dict[str, list[float]] = {"base": [], "motivated": []}
        self.first_call_at: float | None = None

    def __call__(self, model, images, labels, lr, step):
        t0 = time.perf_counter()
        if self.first_call_at is None:
            self.first_call_at = t0
        result = self.inner(model, images, labels, lr, step)
        self.times[model].append(time.perf_counter() - t0)
        return result


class TimedSwitchPair:
    """The pair as a trainer sees it, with each real switch timed (until the device finished); the rest is the
    pair's own."""

    def __init__(self, pair: fm.MotivatedPair):
        self._pair, self.switch_times = pair, []

    def __getattr__(self, name):
        return getattr(self._pair, name)

    def switch_to(self, name: str, backend: str | None = None) -> None:
        if name == self._pair.active:   # the epoch end asks for the base even when it is active: a no-op
            return self._pair.switch_to(name, backend)
        t0 = time.perf_counter()
        self._pair.switch_to(name, backend)
        sync(self._pair.device)
        self.switch_times.append(time.perf_counter() - t0)


class TimedTrainer:
    """A Trainer (AdamW, constant lr, no progress output) on one condition whose steps and switches are timed;
    each `run` continues the same run for more epochs."""

    def __init__(self, pair: fm.MotivatedPair, compile: str | None, condition):
        self.steps, self.pair = TimedStep(), TimedSwitchPair(pair)
        self.trainer = fm.Trainer(self.pair, optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY,
                                  schedule="constant", warmup_epochs=0, condition=condition, compile=compile,
                                  progress=False, log_interval=10**9, step_fn=self.steps)
        self.steps.inner = self.trainer.default_step()

    def run(self, loader, epochs: int) -> dict:
        """One fit() of `epochs` more epochs; its wall time, its steps' and switches' times."""
        t, step_times, switch_times = self.trainer, self.steps.times, self.pair.switch_times
        for times in (*step_times.values(), switch_times):
            times.clear()
        self.steps.first_call_at = None
        first = len(t.history.steps)
        sync(self.pair.device)
        t0 = time.perf_counter()
        t.fit(loader, epochs=t.state.epoch + epochs)
        wall = time.perf_counter() - t0
        steps = t.history.steps[first:]
        assert self.pair.active == "base" and all(np.isfinite(s["loss"]) for s in steps)
        step_s = sum(sum(v) for v in step_times.values())
        prologue = self.steps.first_call_at - t0
        return {"wall_s": wall, "step_s": {m: sum(v) for m, v in step_times.items()},
                "steps": {m: len(v) for m, v in step_times.items()},
                "step_s_median": {m: statistics.median(v) for m, v in step_times.items() if v},
                "switches": len(switch_times), "switch_s": sum(switch_times), "prologue_s": prologue,
                "rest_s": wall - step_s - sum(switch_times) - prologue,
                "images": sum(s["images"] for s in steps)}
