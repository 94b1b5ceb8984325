"""The paper's condition (LossStreak) and its alternatives: EmaStreak, ValLossStreak and GradNormRise."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from fastmotive.conditions.base import Signal, _check_int, _check_kind


def _finite_or_none(x: float) -> float | None:
    return None if math.isinf(x) else x


def _require(signal: Signal, attribute: str, condition: str) -> float:
    value = getattr(signal, attribute)
    if value is None:
        raise ValueError(
            f"{condition} needs signal.{attribute}, got None; the trainer must compute what condition.needs "
            f"lists")
    return value


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
