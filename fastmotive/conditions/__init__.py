"""Motivation conditions: after each batch, decide which model trains the next one.

Acheli & Gaaloul, "Motivation is Something You Need", Algorithm 1: the base model trains until its
loss has fallen `k` batches in a row (LossStreak); then the motivated model trains while the streak
lasts. The paper's alternative conditions (EmaStreak, ValLossStreak, GradNormRise), the ablations
(RandomActivation: experiment A, RandomMatched: experiment B) and the two classical trainings
(Never: base only, Always: motivated only) share one Protocol, Condition.

A condition sees only the floats of a Signal, so under data parallelism the trainer gives it a loss
already reduced across processes, and every rank takes the same decision. The random conditions
draw from their own seeded generator, the same on every rank. States are JSON-serialisable.
See docs/optimizers-and-conditions.md.
"""

from __future__ import annotations

import re

from fastmotive.conditions.base import Condition, Signal
from fastmotive.conditions.baselines import Always, Never, RandomActivation, RandomMatched
from fastmotive.conditions.streaks import EmaStreak, GradNormRise, LossStreak, ValLossStreak
from fastmotive.errors import ConfigError

__all__ = [
    "CONDITIONS",
    "CONDITION_SYNTAX",
    "K_CONDITIONS",
    "Always",
    "Condition",
    "EmaStreak",
    "GradNormRise",
    "LossStreak",
    "Never",
    "RandomActivation",
    "RandomMatched",
    "Signal",
    "ValLossStreak",
    "parse_condition",
]


CONDITIONS: dict[str, type] = {
    "streak": LossStreak,
    "ema": EmaStreak,
    "valloss": ValLossStreak,
    "gradnorm": GradNormRise,
    "random": RandomActivation,
    "matched": RandomMatched,
    "never": Never,
    "always": Always,
}

K_CONDITIONS = ("streak", "ema", "valloss", "gradnorm")   # the conditions parameterised by an integer k >= 1

CONDITION_SYNTAX = ("streak:K | ema:K | valloss:K | gradnorm:K | random:P | matched:N | never | always "
                    "(K >= 1 and N >= 0 integers, P in [0, 1])")

_INT = re.compile(r"[0-9]+")


def parse_condition(spec: str, *, seed: int = 0) -> Condition:
    """Build a condition from a CLI spec such as "streak:2".

    Args:
        spec: ``streak:K | ema:K | valloss:K | gradnorm:K | random:P | matched:N | never | always``,
            K >= 1 an integer, P in [0, 1], N >= 0 an integer.
        seed: seed of the random conditions (random, matched).

    Returns:
        The condition, with its default hyper-parameters otherwise.

    Raises:
        ConfigError (a ValueError): naming the spec and listing the syntax.
    """
    name, _, arg = spec.strip().partition(":")
    bad = ConfigError(f"bad condition spec {spec!r}; expected one of: {CONDITION_SYNTAX}")
    if name in ("never", "always"):
        if arg:
            raise bad
        return CONDITIONS[name]()
    if name not in CONDITIONS:
        raise bad
    if name == "random":
        try:
            p = float(arg)
        except ValueError:
            raise bad from None
        if not 0 <= p <= 1:
            raise bad
        return RandomActivation(p, seed=seed)
    if not _INT.fullmatch(arg):
        raise bad
    if name == "matched":
        return RandomMatched(int(arg), seed=seed)
    if int(arg) < 1:
        raise bad
    return CONDITIONS[name](int(arg))
