"""What an arena optimizer is: its registry record (`OptimInfo`) and the base class the five share
(`SegmentOptimizer`: the segment, zeroing its grad, the state dict that names the optimizer)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import torch

from fastmotive.core.segment import Segment
from fastmotive.optim._segment_ops import _decay_vector, _scratch, _with_l2


@dataclass(frozen=True)
class OptimInfo:
    """What the trainer, the switch and `create_optimizer` need to know about one optimizer."""

    name: str
    cls: type   # the SegmentOptimizer subclass create_optimizer builds
    state_rows: tuple[str, ...]  # state rows it uses, in row order; the switch copies exactly these
    defaults: dict  # default hyper-parameters of create_optimizer for this optimizer
    takes: tuple[str, ...]  # the create_optimizer arguments it uses of momentum, nesterov, betas, eps, alpha
    extra: tuple[str, ...] = field(default=())  # its own keyword arguments, defaults in `defaults`


class SegmentOptimizer:
    """An optimizer bound to one segment, with its weight-decay vector (timm's grouping: no decay on 1-D
    tensors unless `decay_1d`); its tensor state lives in the segment's state rows, so its state dict only
    names it (a checkpoint restores the rows with the arena)."""

    def __init__(self, segment: Segment, info: OptimInfo, weight_decay: float, decay_1d: bool,
                 no_weight_decay: Collection[str]):
        self.segment, self.info = segment, info
        self._wd = _decay_vector(segment, weight_decay, decay_1d, no_weight_decay)   # per element, or a scalar
        self._l2 = None   # grad + L2 decay, written in place each step

    def _l2_grad(self):
        """The gradient with L2 weight decay added (SGD, RMSprop, RMSpropTF, Lamb), in a scratch tensor kept
        across steps; the gradient itself when nothing decays."""
        param = self.segment.param
        if isinstance(self._wd, torch.Tensor) or self._wd != 0:
            self._l2 = _scratch(self._l2, param)
        return _with_l2(self.segment.grad, param, self._wd, self._l2)

    def step(self, lr: float, step: int) -> None:
        """Update the segment in place; `step` is the 1-based global step count."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Zero the segment's grad in place (never to None)."""
        self.segment.grad.zero_()

    def state_dict(self) -> dict:
        return {"name": self.info.name}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.info.name:
            raise ValueError(
                f"optimizer state is for {state.get('name')!r}, this optimizer is {self.info.name!r}; resume "
                f"with the optimizer the run was started with")


def _check_step(step: int) -> None:
    if step < 1:
        raise ValueError(f"step is the 1-based global step count, got {step}")
