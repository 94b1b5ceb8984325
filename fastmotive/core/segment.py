"""A segment: one model's parameters packed in the arena, as optimizers see them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorSlot:
    name: str                  # parameter name, e.g. "blocks.0.0.conv_dw.weight"
    offset: int                # first element, relative to the segment start
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Segment:
    """One model's parameters in one flat buffer, with grads and optimizer-state rows in the same layout."""
    param: torch.Tensor        # 1-D contiguous view (gaps between slots are padding, always 0)
    grad: torch.Tensor         # 1-D view of the same length; autograd accumulates into it in place
    state: torch.Tensor        # 2-D [rows, len] view: optimizer state rows, zero-initialised
    slots: tuple[TensorSlot, ...]
