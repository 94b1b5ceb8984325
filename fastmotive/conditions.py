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

import math
import random
import re
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

__all__ = [
    "CONDITIONS",
    "CONDITION_SYNTAX",
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


@dataclass(frozen=True)
class Signal:
    """What a condition sees after one batch's optimizer step."""

    loss: float  # this batch's training loss (may already be reduced across processes)
    epoch: int
    batch: int  # index of the batch within the epoch (0-based)
    batches_per_epoch: int
    grad_norm: float | None = None  # L2 norm of the whole gradient of the active model, if asked for
    val_loss: float | None = None  # loss on a held-out training batch, if asked for


class Condition(Protocol):
    """Decides, batch by batch, whether the motivated model trains."""

    needs: frozenset[str]  # subset of {"grad_norm", "val_loss"}; the trainer computes only these

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        """Called before an epoch's first batch; True: the epoch starts on the motivated model."""
        ...

    def update(self, signal: Signal) -> bool:
        """Called after each batch's optimizer step; True: the motivated model trains the next batch."""
        ...

    def state_dict(self) -> dict:
        """JSON-serialisable state (plain ints, floats, lists; +-inf stored as None)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


def _check_int(label: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")


def _check_kind(state: dict, kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(
            f"condition state is for {state.get('kind')!r}, this condition is {kind!r}; resume with the "
            f"condition the run was started with")


def _finite_or_none(x: float) -> float | None:
    return None if math.isinf(x) else x


def _require(signal: Signal, attribute: str, condition: str) -> float:
    value = getattr(signal, attribute)
    if value is None:
        raise ValueError(
            f"{condition} needs signal.{attribute}, got None; the trainer must compute what condition.needs "
            f"lists")
    return value


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def _set_rng_state(rng: random.Random, state: list) -> None:
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))


# ---------------------------------------------------------------------------------------------------
# The paper's condition and its alternatives
# ---------------------------------------------------------------------------------------------------


@dataclass
class LossStreak:
    """The paper's condition: the batch loss fell k times in a row.

    ``streak = streak + 1 if loss < prev_loss else 0; prev_loss = loss``, from ``prev_loss = +inf``
    (so the first batch counts as a fall); neither is reset between epochs. Motivated while
    ``streak >= k``.
    """

    k: int
    streak: int = field(default=0, init=False)
    prev_loss: float = field(default=math.inf, init=False)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        _check_int("LossStreak k", self.k, 1)

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        self.streak = self.streak + 1 if signal.loss < self.prev_loss else 0
        self.prev_loss = signal.loss
        return self.streak >= self.k

    def state_dict(self) -> dict:
        return {"kind": "streak", "streak": self.streak, "prev_loss": _finite_or_none(self.prev_loss)}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "streak")
        self.streak = state["streak"]
        self.prev_loss = math.inf if state["prev_loss"] is None else state["prev_loss"]


@dataclass
class EmaStreak:
    """The smoothed loss fell by more than a relative `min_drop` k times in a row.

    ``ema = loss`` on the first batch (no fall); afterwards ``ema = ema_prev + alpha * (loss - ema_prev)``
    and ``streak = streak + 1 if ema_prev - ema > min_drop * ema_prev else 0``. Never reset between
    epochs. Motivated while ``streak >= k``. With alpha=0.02, min_drop=0.002 a batch counts when its
    loss is more than 10 % below the average.
    """

    k: int
    alpha: float = 0.02
    min_drop: float = 0.002
    streak: int = field(default=0, init=False)
    ema: float | None = field(default=None, init=False)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        _check_int("EmaStreak k", self.k, 1)
        if not 0 < self.alpha <= 1:
            raise ValueError(f"EmaStreak alpha must be in (0, 1], got {self.alpha!r}")
        if self.min_drop < 0:
            raise ValueError(f"EmaStreak min_drop must be >= 0, got {self.min_drop!r}")

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        if self.ema is None:
            self.ema = signal.loss
            return self.streak >= self.k
        prev = self.ema
        self.ema = prev + self.alpha * (signal.loss - prev)
        self.streak = self.streak + 1 if prev - self.ema > self.min_drop * prev else 0
        return self.streak >= self.k

    def state_dict(self) -> dict:
        return {"kind": "ema", "streak": self.streak, "ema": self.ema}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "ema")
        self.streak = state["streak"]
        self.ema = state["ema"]


@dataclass
class ValLossStreak:
    """LossStreak's rule on ``signal.val_loss``, the loss on one held-out training batch."""

    k: int
    streak: int = field(default=0, init=False)
    prev_loss: float = field(default=math.inf, init=False)
    needs: ClassVar[frozenset[str]] = frozenset({"val_loss"})

    def __post_init__(self) -> None:
        _check_int("ValLossStreak k", self.k, 1)

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        loss = _require(signal, "val_loss", "ValLossStreak")
        self.streak = self.streak + 1 if loss < self.prev_loss else 0
        self.prev_loss = loss
        return self.streak >= self.k

    def state_dict(self) -> dict:
        return {"kind": "valloss", "streak": self.streak, "prev_loss": _finite_or_none(self.prev_loss)}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "valloss")
        self.streak = state["streak"]
        self.prev_loss = math.inf if state["prev_loss"] is None else state["prev_loss"]


@dataclass
class GradNormRise:
    """The L2 norm of the whole gradient rose strictly k times in a row.

    ``streak = streak + 1 if grad_norm > prev_norm else 0; prev_norm = grad_norm``, from
    ``prev_norm = -inf`` (the first batch counts as a rise, mirroring LossStreak); never reset between
    epochs. Motivated while ``streak >= k``.
    """

    k: int
    streak: int = field(default=0, init=False)
    prev_norm: float = field(default=-math.inf, init=False)
    needs: ClassVar[frozenset[str]] = frozenset({"grad_norm"})

    def __post_init__(self) -> None:
        _check_int("GradNormRise k", self.k, 1)

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        norm = _require(signal, "grad_norm", "GradNormRise")
        self.streak = self.streak + 1 if norm > self.prev_norm else 0
        self.prev_norm = norm
        return self.streak >= self.k

    def state_dict(self) -> dict:
        return {"kind": "gradnorm", "streak": self.streak, "prev_norm": _finite_or_none(self.prev_norm)}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "gradnorm")
        self.streak = state["streak"]
        self.prev_norm = -math.inf if state["prev_norm"] is None else state["prev_norm"]


# ---------------------------------------------------------------------------------------------------
# Ablations and classical training
# ---------------------------------------------------------------------------------------------------


@dataclass
class RandomActivation:
    """Experiment A: each batch after the first of an epoch is motivated with probability p,
    independently (one draw per update)."""

    p: float
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.p <= 1:
            raise ValueError(f"RandomActivation p must be in [0, 1], got {self.p!r}")
        self.rng = random.Random(self.seed)

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        return self.rng.random() < self.p

    def state_dict(self) -> dict:
        return {"kind": "random", "rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "random")
        _set_rng_state(self.rng, state["rng"])


@dataclass
class RandomMatched:
    """Experiment B: the motivated model trains exactly `per_epoch` batches of each epoch, drawn at
    random (distinct indices) when the epoch starts."""

    per_epoch: int
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)
    epoch: int | None = field(default=None, init=False)
    chosen: frozenset[int] = field(default=frozenset(), init=False, repr=False)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        _check_int("RandomMatched per_epoch", self.per_epoch, 0)
        self.rng = random.Random(self.seed)

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        if self.per_epoch > batches_per_epoch:
            raise ValueError(
                f"RandomMatched(per_epoch={self.per_epoch}) needs at least {self.per_epoch} batches per "
                f"epoch, the epoch has {batches_per_epoch}; lower per_epoch or the batch size")
        self.epoch = epoch
        self.chosen = frozenset(self.rng.sample(range(batches_per_epoch), self.per_epoch))
        return 0 in self.chosen

    def update(self, signal: Signal) -> bool:
        if signal.epoch != self.epoch:
            raise ValueError(
                f"RandomMatched drew batches for epoch {self.epoch}, got a signal of epoch {signal.epoch}; "
                f"call start_epoch first")
        return signal.batch + 1 in self.chosen

    def state_dict(self) -> dict:
        return {"kind": "matched", "rng": _rng_state(self.rng), "epoch": self.epoch,
                "chosen": sorted(self.chosen)}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "matched")
        _set_rng_state(self.rng, state["rng"])
        self.epoch = state["epoch"]
        self.chosen = frozenset(state["chosen"])


@dataclass
class Never:
    """Classical training of the base model alone."""

    needs: ClassVar[frozenset[str]] = frozenset()

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return False

    def update(self, signal: Signal) -> bool:
        return False

    def state_dict(self) -> dict:
        return {"kind": "never"}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "never")


@dataclass
class Always:
    """Classical training of the motivated model alone."""

    needs: ClassVar[frozenset[str]] = frozenset()

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return True

    def update(self, signal: Signal) -> bool:
        return True

    def state_dict(self) -> dict:
        return {"kind": "always"}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, "always")


# ---------------------------------------------------------------------------------------------------
# Registry and CLI specs
# ---------------------------------------------------------------------------------------------------

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
        ValueError: naming the spec and listing the syntax.
    """
    name, _, arg = spec.strip().partition(":")
    bad = ValueError(f"bad condition spec {spec!r}; expected one of: {CONDITION_SYNTAX}")
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
