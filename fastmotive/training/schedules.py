"""Learning-rate schedules on the global step, shared by the base and the motivated model.

Algorithm 1 steps whichever model is active with the lr of one shared schedule at the global step
(the count of batches trained so far, over both models), so a schedule is a plain function of that
step. Each schedule starts with an optional linear warmup. See docs/optimizers-and-conditions.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SCHEDULES", "Schedule", "make_schedule"]

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class Schedule:
    """lr(step) for the 0-based global step; build it with make_schedule."""

    name: str  # one of SCHEDULES
    lr: float  # peak lr, reached at the end of the warmup
    total_steps: int  # steps of the whole run; the cosine reaches min_lr here
    steps_per_epoch: int
    warmup_steps: int  # steps of linear warmup from warmup_lr
    warmup_lr: float
    min_lr: float  # cosine floor
    decay_epochs: float  # step schedule: epochs between decays
    decay_rate: float  # step schedule: factor per decay
    warmup_prefix: bool = False  # step schedule: epochs of decay count from the end of the warmup

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"schedule step is the 0-based global step, got {step}")
        if step < self.warmup_steps:
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        if self.name == "cosine":
            # decays over the steps after the warmup; stays at min_lr past total_steps
            span = max(self.total_steps - self.warmup_steps, 1)
            t = min(step - self.warmup_steps, span)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * t / span))
        if self.name == "step":
            # the epoch counts from the run's start, warmup included, as timm's StepLRScheduler; with
            # warmup_prefix from the warmup's end (timm's --warmup-prefix: recipe E decays after 5 epochs)
            t = step - self.warmup_steps if self.warmup_prefix else step
            return self.lr * self.decay_rate ** math.floor(t / (self.steps_per_epoch * self.decay_epochs))
        return self.lr


def make_schedule(name: str, *, lr: float, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0,
                  warmup_lr: float = 0.0, min_lr: float = 0.0, decay_epochs: float = 30,
                  decay_rate: float = 0.1, warmup_prefix: bool = False) -> Callable[[int], float]:
    """Build the schedule `name`: a function from the 0-based global step to the lr.

    - "cosine": after the warmup, ``min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with ``t`` the
      steps since the warmup and ``T = total_steps - warmup_steps``; ``min_lr`` from step ``total_steps`` on.
    - "step": ``lr * decay_rate ** floor(epoch / decay_epochs)``, ``epoch = step / steps_per_epoch``, counted
      from the end of the warmup with `warmup_prefix`.
    - "constant": ``lr``.

    The warmup covers ``warmup_steps = floor(warmup_epochs * steps_per_epoch + 0.5)`` steps and goes
    linearly from ``warmup_lr`` (at step 0) towards ``lr`` (reached at step ``warmup_steps``).

    Args:
        name: one of SCHEDULES.
        lr: peak learning rate.
        total_steps: steps in the whole run (epochs * steps_per_epoch).
        steps_per_epoch: batches per epoch.
        warmup_epochs: length of the warmup in epochs, may be fractional.
        warmup_lr: lr at step 0 of the warmup.
        min_lr: floor of the cosine.
        decay_epochs: epochs between two decays of the step schedule, may be fractional.
        decay_rate: factor of each decay of the step schedule.
        warmup_prefix: the step schedule's epochs start after the warmup (the cosine always decays over the
            steps after the warmup, which is what timm's --warmup-prefix gives it).

    Returns:
        A Schedule: call it with the global step.

    Raises:
        ValueError: unknown name or a bad value, naming the argument.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    problems = [f"{label}={value} must be {rule}" for label, value, ok, rule in (
        ("lr", lr, lr >= 0, ">= 0"),
        ("total_steps", total_steps, total_steps >= 1, ">= 1"),
        ("steps_per_epoch", steps_per_epoch, steps_per_epoch >= 1, ">= 1"),
        ("warmup_epochs", warmup_epochs, warmup_epochs >= 0, ">= 0"),
        ("warmup_lr", warmup_lr, warmup_lr >= 0, ">= 0"),
        ("min_lr", min_lr, min_lr >= 0, ">= 0"),
        ("decay_epochs", decay_epochs, decay_epochs > 0, "> 0"),
        ("decay_rate", decay_rate, decay_rate >= 0, ">= 0"),
    ) if not ok]
    if problems:
        raise ValueError(f"schedule {name!r}: " + "; ".join(problems))
    warmup_steps = math.floor(warmup_epochs * steps_per_epoch + 0.5)
    return Schedule(name=name, lr=lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                    warmup_steps=warmup_steps, warmup_lr=warmup_lr, min_lr=min_lr,
                    decay_epochs=decay_epochs, decay_rate=decay_rate, warmup_prefix=warmup_prefix)
