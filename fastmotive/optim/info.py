"""The optimizer registry (OptimInfo, OPTIMIZERS), the ArenaOptimizer protocol, the state and step checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..segment import Segment


@dataclass(frozen=True)
class OptimInfo:
    """What the trainer and the switch need to know about one optimizer."""

    name: str
    state_rows: tuple[str, ...]  # state rows it uses, in row order; the switch copies exactly these
    defaults: dict  # default hyper-parameters of create_optimizer for this optimizer


OPTIMIZERS: dict[str, OptimInfo] = {
    "sgd": OptimInfo("sgd", ("momentum_buffer",), {"momentum": 0.9, "nesterov": False}),
    "adamw": OptimInfo("adamw", ("exp_avg", "exp_avg_sq"), {"betas": (0.9, 0.999), "eps": 1e-8}),
    "rmsprop": OptimInfo("rmsprop", ("square_avg", "momentum_buffer"),
                         {"alpha": 0.99, "eps": 1e-8, "momentum": 0.9}),
    # timm's RMSpropTF class default eps is 1e-10 (inside the sqrt)
    "rmsproptf": OptimInfo("rmsproptf", ("square_avg", "momentum_buffer"),
                           {"alpha": 0.99, "eps": 1e-10, "momentum": 0.9}),
    "lamb": OptimInfo("lamb", ("exp_avg", "exp_avg_sq"),
                      {"betas": (0.9, 0.999), "eps": 1e-6, "max_grad_norm": 1.0, "trust_clip": False,
                       "always_adapt": False}),
}

# keyword arguments beyond the common ones that an optimizer accepts through create_optimizer(**extra)
_EXTRA = {"lamb": ("max_grad_norm", "trust_clip", "always_adapt")}


class ArenaOptimizer(Protocol):
    """An optimizer bound to one segment; its tensor state lives in the segment's state rows."""

    info: OptimInfo
    segment: Segment

    def step(self, lr: float, step: int) -> None:
        """Update the segment in place; `step` is the 1-based global step count."""
        ...

    def zero_grad(self) -> None:
        """Zero the segment's grad in place (never to None)."""
        ...

    def state_dict(self) -> dict:
        """Non-tensor state (the tensor state is in the segment's rows)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


def _check_state(info: OptimInfo, state: dict) -> None:
    if state.get("name") != info.name:
        raise ValueError(
            f"optimizer state is for {state.get('name')!r}, this optimizer is {info.name!r}; resume with "
            f"the optimizer the run was started with")


def _check_step(step: int) -> None:
    if step < 1:
        raise ValueError(f"step is the 1-based global step count, got {step}")
