"""Segment helpers of the arena optimizers: the segment check, slot pieces, weight decay vectors, scratch."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection

import torch

from fastmotive.core.segment import Segment, TensorSlot


def _check_segment(segment: Segment, info) -> None:
    """Raise ValueError naming the first part of `segment` that the optimizer `info` (an `OptimInfo`) cannot
    update in place."""
    param, grad, state = segment.param, segment.grad, segment.state
    where = f"segment for optimizer {info.name!r}"
    if param.dim() != 1 or not param.is_contiguous() or not param.is_floating_point():
        raise ValueError(
            f"{where}: param must be a 1-D contiguous floating-point tensor, got shape {tuple(param.shape)}, "
            f"dtype {param.dtype}, contiguous={param.is_contiguous()}")
    length = param.numel()
    for label, t in (("grad", grad), ("state", state)):
        if t.dtype != param.dtype or t.device != param.device:
            raise ValueError(
                f"{where}: {label} is {t.dtype} on {t.device}, param is {param.dtype} on {param.device}; "
                f"they must match")
    if grad.shape != param.shape or not grad.is_contiguous():
        raise ValueError(
            f"{where}: grad must be 1-D contiguous with the param's length {length}, "
            f"got shape {tuple(grad.shape)}, contiguous={grad.is_contiguous()}")
    n_rows = len(info.state_rows)
    if state.dim() != 2 or state.shape[1] != length or state.shape[0] < n_rows:
        raise ValueError(
            f"{where}: state must be [n_rows >= {n_rows}, {length}] for rows {info.state_rows}, "
            f"got shape {tuple(state.shape)}")
    if any(not state[i].is_contiguous() for i in range(n_rows)):
        raise ValueError(f"{where}: each state row must be contiguous (stride {tuple(state.stride())})")
    end = 0
    for slot in segment.slots:
        if slot.offset < end or slot.offset + slot.numel > length:
            raise ValueError(
                f"{where}: slot {slot.name!r} at offset {slot.offset} with {slot.numel} elements must start "
                f"at or after {end} (slots ascending, not overlapping) and end by the segment length "
                f"{length}")
        end = slot.offset + slot.numel


def _pieces(segment: Segment) -> list[int]:
    """Lengths [gap, slot, gap, slot, ..., slot, tail] covering the segment; gaps may be 0.

    Splitting a segment-long tensor with these lengths and taking ``[1::2]`` gives one view per slot,
    in one C++ call.
    """
    lengths, end = [], 0
    for slot in segment.slots:
        lengths += [slot.offset - end, slot.numel]
        end = slot.offset + slot.numel
    return lengths + [segment.param.numel() - end]


def _decayed(slot: TensorSlot, decay_1d: bool, no_weight_decay: Collection[str]) -> bool:
    # timm param_groups_weight_decay: excluded when ndim <= 1 or the name ends in ".bias", or listed
    # in the model's no_weight_decay() (fnmatch patterns).
    if any(fnmatch.fnmatch(slot.name, pattern) for pattern in no_weight_decay):
        return False
    return decay_1d or not (len(slot.shape) <= 1 or slot.name.endswith(".bias"))


def _decay_vector(segment: Segment, weight_decay: float, decay_1d: bool,
                  no_weight_decay: Collection[str]) -> float | torch.Tensor:
    """The weight decay of each element: a float where it is the same for every slot, else a vector
    holding `weight_decay` on decayed slots and 0 elsewhere (gaps included), built once.

    A gap is padding and always 0, so decaying it changes nothing: a uniform decay stays a scalar and
    the update keeps the reference's own op (``grad.add(param, alpha=wd)``).
    """
    if weight_decay == 0:
        return 0.0
    decayed = [_decayed(slot, decay_1d, no_weight_decay) for slot in segment.slots]
    if all(decayed):
        return weight_decay
    if not any(decayed):
        return 0.0
    pieces = _pieces(segment)
    values = [0.0] * len(pieces)
    values[1::2] = [weight_decay if d else 0.0 for d in decayed]
    param = segment.param
    return torch.repeat_interleave(
        torch.tensor(values, dtype=param.dtype, device=param.device),
        torch.tensor(pieces, device=param.device), output_size=param.numel())


def _decayed_spans(segment: Segment, decay_1d: bool, no_weight_decay: Collection[str]) -> list[tuple[int, int]]:
    """(start, stop) of `segment`'s decayed runs: consecutive decayed slots (and the zero gaps between them)
    merged into one span, ascending."""
    runs: list[list[int]] = []
    previous_decayed = False
    for slot in segment.slots:
        if slot.numel == 0:   # covers no element: neither starts nor breaks a run
            continue
        decayed = _decayed(slot, decay_1d, no_weight_decay)
        if decayed and previous_decayed:
            runs[-1][1] = slot.offset + slot.numel
        elif decayed:
            runs.append([slot.offset, slot.offset + slot.numel])
        previous_decayed = decayed
    return [(start, stop) for start, stop in runs]


def _with_l2(grad: torch.Tensor, param: torch.Tensor, wd: float | torch.Tensor,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """grad + wd * param written to `out` (a new tensor if None), as torch adds L2 decay; addcmul gives the
    same bits per element. With no decay, `grad` itself."""
    if isinstance(wd, torch.Tensor):
        return torch.addcmul(grad, param, wd, out=out)
    return torch.add(grad, param, alpha=wd, out=out) if wd != 0 else grad


def _scratch(current: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A segment-sized work tensor, allocated once per optimizer: a fresh one per step cost page faults on a
    CPU (about 15 % of an SGD step on efficientnet_b0)."""
    if current is None or current.shape != like.shape or current.device != like.device:
        return torch.empty_like(like)
    return current
