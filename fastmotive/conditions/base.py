"""What all conditions share: the Signal they see, the Condition protocol, the argument and state checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
