"""The flat arena: every parameter, gradient, optimizer-state row and buffer of both models in one buffer.

Layout of ``arena.data`` ([rows, columns], the parameters' dtype, one device):

    columns:  | buffers of other dtypes | base params | motivated params | base buffers | motivated buffers |
    row 0:      parameters and buffers (buffers of other dtypes, e.g. int64, are byte-reinterpreted)
    rows 1..S:  optimizer state rows (momentum, exp_avg, exp_avg_sq, ...), same layout as row 0
    row S+1:    gradients (parameter columns only)

Each model's parameters form one contiguous *segment* per row, so an optimizer updates a whole model
with a few tensor ops. Every slot starts on a 16-element boundary (64 B in fp32) so kernels can
vectorise and so int64 buffers can be viewed in place. Nothing is re-pointed after set-up except by
`to()` and `ensure_state_rows()`, which re-bind every view at once. `as_bits` is the integer view every
bitwise copy (the switch backends, the kernel) goes through.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from fastmotive.core.segment import Segment, TensorSlot
from fastmotive.errors import ArenaError

ALIGN = 16
MODELS = ("base", "motivated")   # a pair's two members, in arena order
_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass(frozen=True)
class Slot:
    model: str        # "base" or "motivated"
    name: str         # parameter or buffer name in that model
    kind: str         # "param" or "buffer"
    offset: int       # first arena column
    units: int        # arena columns it spans (before padding)
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def layout_free(self) -> bool:
        """A 4-D tensor whose channels-last order is its contiguous order (1x1 and depthwise convolution
        weights): only the stride of a size-1 dimension differs, so either view reads the same bytes."""
        return len(self.shape) == 4 and (self.shape[1] == 1 or self.shape[2] * self.shape[3] == 1)


def as_bits(t: torch.Tensor) -> torch.Tensor:
    """`t` viewed as the integer dtype of its item size: copies through it move bits, never floats."""
    return t.view(_INT_OF_SIZE[t.element_size()])


def own_storage(t: torch.Tensor) -> torch.Tensor:
    """Contiguous `t` on a storage of exactly its bytes, sharing its memory. torch.save writes a view's whole
    storage, so the arena's first rows, saved as a plain view, would write the gradient row as well."""
    if not t.is_contiguous():
        raise ValueError("own_storage needs a contiguous tensor")
    start = t.storage_offset() * t.element_size()
    storage = t.untyped_storage()[start:start + t.numel() * t.element_size()]
    return torch.empty(0, dtype=t.dtype, device=t.device).set_(storage, 0, t.shape)


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _check_pair(base: nn.Module, motivated: nn.Module | None) -> tuple[torch.dtype, torch.device]:
    """One floating dtype for all parameters, one device for everything; else name the tensor at fault."""
    first = next(iter(base.parameters()), None)
    if first is None:
        raise ArenaError("the base model has no parameters")
    dtype, device = first.dtype, first.device
    if not dtype.is_floating_point:
        raise ArenaError(f"parameters must be floating point, got {dtype}")
    for model_name, model in zip(MODELS, (base, motivated)):
        if model is None:
            continue
        for name, p in model.named_parameters():
            if p.dtype != dtype:
                raise ArenaError(f"{model_name} parameter {name!r} is {p.dtype} but the arena dtype is {dtype} "
                                 "(from the base's first parameter): cast both models to one dtype")
            if p.device != device:
                raise ArenaError(f"{model_name} parameter {name!r} is on {p.device} but the base is on {device}: "
                                 "move both models to one device first")
        for name, b in model.named_buffers():
            if b.device != device:
                raise ArenaError(f"{model_name} buffer {name!r} is on {b.device} but the base is on {device}")
    return dtype, device


class Arena:
    """Packs two models (or one: `motivated` None, a single-model run) into one flat buffer and keeps their
    tensors as views into it."""

    def __init__(self, base: nn.Module, motivated: nn.Module | None, state_rows: int = 2):
        self.dtype, device = _check_pair(base, motivated)
        self.models = {"base": base} if motivated is None else {"base": base, "motivated": motivated}
        self.slots: dict[tuple[str, str], Slot] = {}
        self.segment_bounds: dict[str, tuple[int, int]] = {}
        cursor = 0
        # Buffers of another dtype (BN's int64 num_batches_tracked) come first: torch.compile's overlap
        # check compares storage offsets in elements, not bytes, so an int64 alias placed after the fp32
        # parameters would seem to overlap one of them (its element offset is half its fp32 column).
        for kind, foreign in (("buffer", True), ("param", False), ("buffer", False)):
            for model_name in self.models:
                start = cursor
                cursor = self._place(model_name, kind, cursor, foreign)
                if kind == "param":
                    self.segment_bounds[model_name] = (start, cursor)
        self.columns = cursor
        self.state_rows = state_rows
        self.channels_last = False   # layout-free parameters and gradients bound with channels-last strides
        self.data = torch.zeros(state_rows + 2, self.columns, dtype=self.dtype, device=device)
        with torch.no_grad():   # fill row 0 with the models' current values
            for slot in self.slots.values():
                self.view(slot).copy_(self._current(slot))
        self._bind()

    # -- layout ---------------------------------------------------------------------------------------
    def _place(self, model_name: str, kind: str, cursor: int, foreign: bool) -> int:
        """Lay out one model's parameters or buffers (of another dtype if `foreign`) from `cursor`."""
        model = self.models[model_name]
        named = model.named_parameters() if kind == "param" else model.named_buffers()
        itemsize = self.dtype.itemsize
        for name, t in named:
            if (t.dtype != self.dtype) != foreign:
                continue
            if (t.element_size() * t.numel()) % itemsize or t.element_size() % itemsize:
                raise ArenaError(f"{model_name} {kind} {name!r} has dtype {t.dtype}, whose size is not a multiple of "
                                 f"the arena dtype {self.dtype}; such buffers are not supported")
            units = t.numel() * t.element_size() // itemsize
            self.slots[(model_name, name)] = Slot(model_name, name, kind, cursor, units, tuple(t.shape), t.dtype)
            cursor += _align(units)
        return cursor

    def view(self, slot: Slot, row: int = 0) -> torch.Tensor:
        """The arena view of a slot on a row (0 = values, -1 = grads, 1..S = optimizer state)."""
        flat = self.data[row, slot.offset: slot.offset + slot.units]
        if slot.dtype != self.dtype:
            flat = flat.view(slot.dtype)
        return flat.view(slot.shape)

    def alias(self, slot: Slot, row: int = 0) -> torch.Tensor:
        """Like `view`, but a fresh tensor on the arena's storage with its own autograd version counter.

        Views share their base's version counter: BN's running-stat update or a gradient accumulated
        into one view would bump the counter of every saved tensor in the arena and break backward.
        """
        row = row % self.data.shape[0]
        byte_offset = (self.data.storage_offset() + row * self.columns + slot.offset) * self.dtype.itemsize
        t = torch.empty(0, dtype=slot.dtype, device=self.data.device)
        storage, offset = self.data.untyped_storage(), byte_offset // slot.dtype.itemsize
        if self.channels_last and slot.kind == "param" and slot.layout_free:
            n, c, h, w = slot.shape
            return t.set_(storage, offset, slot.shape, (h * w * c, 1, w * c, c))
        return t.set_(storage, offset, slot.shape)

    def set_channels_last(self, on: bool) -> None:
        """Bind the layout-free convolution weights (and their gradients) with channels-last strides, or back.

        Metadata only: the bytes, the addresses and every copy plan stay as they are. A convolution whose
        weight reads channels-last keeps its activations channels-last, which the CPU's kernels run 2-2.5x
        faster for EfficientNet (docs/benchmarks.md, "Channels-last on the CPU"); weights whose two orders
        differ (a stem convolution, 3x3 kernels over several channels) stay contiguous."""
        if on != self.channels_last:
            self.channels_last = on
            self._bind()

    def _current(self, slot: Slot) -> torch.Tensor:
        model = self.models[slot.model]
        return model.get_parameter(slot.name) if slot.kind == "param" else model.get_buffer(slot.name)

    # -- binding --------------------------------------------------------------------------------------
    def _bind(self) -> None:
        """Point every parameter, gradient and buffer of both models at its arena view."""
        self._expected_ptrs = []
        for slot in self.slots.values():
            model = self.models[slot.model]
            owner_name, _, leaf = slot.name.rpartition(".")
            owner = model.get_submodule(owner_name)
            if slot.kind == "param":
                p = owner._parameters[leaf]
                p.data = self.alias(slot)
                p.grad = self.alias(slot, row=-1)
                self._expected_ptrs.append((p, p.data_ptr(), p.grad.data_ptr()))
            else:
                owner._buffers[leaf] = self.alias(slot)

    def ensure_state_rows(self, n: int) -> None:
        """Grow the optimizer state rows to at least `n` (a set-up step: re-binds every view)."""
        if n <= self.state_rows:
            return
        grown = torch.zeros(n + 2, self.columns, dtype=self.dtype, device=self.data.device)
        grown[: self.state_rows + 1] = self.data[:-1]
        grown[-1] = self.data[-1]
        self.data, self.state_rows = grown, n
        self._bind()

    def to(self, device) -> Arena:
        """Move the whole arena (both models, grads, optimizer state) and re-bind every view."""
        device = torch.device(device)
        if device != self.data.device:
            self.data = self.data.to(device)
            self._bind()
        return self

    # -- segments and guard ---------------------------------------------------------------------------
    def segment(self, model_name: str) -> Segment:
        """A model's parameters as one flat segment, with its gradient and optimizer-state rows."""
        start, stop = self.segment_bounds[model_name]
        slots = tuple(TensorSlot(s.name, s.offset - start, s.shape) for s in self.slots.values()
                      if s.model == model_name and s.kind == "param")
        return Segment(param=self.data[0, start:stop], grad=self.data[-1, start:stop],
                       state=self.data[1:-1, start:stop], slots=slots)

    def check_bound(self, full: bool = True) -> None:
        """Raise ArenaError naming any parameter, gradient or buffer that is no longer its arena view.

        The fast check compares the recorded parameters' addresses (`.data =`, `.double()`); the full
        check also looks every tensor up by name (`load_state_dict(assign=True)` swaps the objects).
        """
        for p, ptr, grad_ptr in self._expected_ptrs:
            if p.data_ptr() != ptr or p.grad is None or p.grad.data_ptr() != grad_ptr:
                name = self._name_of(p)
                raise ArenaError(f"parameter {name} is no longer a view into the arena (it was cast, re-assigned "
                                 "or its grad was set to None): training it would update a detached copy. "
                                 "Do not use .data=, .double(), .to() or load_state_dict(assign=True) on a pair's "
                                 "models; use pair.to(device) and pair.load_state_dict()")
        if full:
            for slot in self.slots.values():
                t = self._current(slot)
                view = self.view(slot)
                if t.data_ptr() != view.data_ptr() or t.dtype != view.dtype or t.shape != view.shape:
                    raise ArenaError(f"{slot.model} {slot.kind} {slot.name!r} is no longer a view into the arena "
                                     f"(it was replaced or cast: {t.dtype} {tuple(t.shape)} at another address)")

    def _name_of(self, tensor) -> str:
        for (model_name, name), slot in self.slots.items():
            if slot.kind == "param" and self._current(slot) is tensor:
                return f"{model_name}.{name}"
        return "<unknown>"
