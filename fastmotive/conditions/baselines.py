"""Ablations (RandomActivation, RandomMatched: experiments A and B) and classical training (Never, Always)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import ClassVar

from fastmotive.conditions.base import Signal, _check_int, _check_kind


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def _set_rng_state(rng: random.Random, state: list) -> None:
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))


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


class _Constant:
    """A condition whose answer never changes: `value` (True: the motivated model trains) every batch."""

    needs: ClassVar[frozenset[str]] = frozenset()
    value: ClassVar[bool]
    kind: ClassVar[str]

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> bool:
        return self.value

    def update(self, signal: Signal) -> bool:
        return self.value

    def state_dict(self) -> dict:
        return {"kind": self.kind}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(state, self.kind)

    def __eq__(self, other) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Never(_Constant):
    """Classical training of the base model alone."""
    value, kind = False, "never"


class Always(_Constant):
    """Classical training of the motivated model alone."""
    value, kind = True, "always"
