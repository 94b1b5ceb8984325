"""Switch backends, and the choice of one: execute a copy plan on an arena, up (base -> motivated) or down.

- ``triton``: one kernel launch over every run of every row (kernels/run_copy.py); default on CUDA.
- ``torch``:  one ``torch._foreach_copy_`` over per-entry strided views of the stacked rows (values and
              optimizer state rows together; a second call for buffers of another dtype); default on CPU.
              The views are built once per arena storage. On a CPU, block copies of whole runs beat
              element-index gathers (index_select/scatter_ ran 2-8x slower than per-tensor copies here).
- ``naive``:  per-tensor slice copies of every parameter, buffer and state row, one row at a time, straight
              from the weights map: the independent reference for tests and benchmarks.
All three are bitwise identical: they move bits through an integer view, never through arithmetic.
`resolve_backend` is the one place a backend name is checked against the device.
"""
from __future__ import annotations

import functools
import os

import torch

from fastmotive.core.arena import Arena, as_bits
from fastmotive.core.copy_plan import CopyPlan
from fastmotive.core.kernel_launch import KernelRuns, copy_runs, prepare_runs
from fastmotive.core.weights_map import WeightsMap, split_chunks
from fastmotive.errors import ConfigError

BACKENDS = ("triton", "torch", "naive")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def default_backend(device: torch.device) -> str:
    """The device's default: triton on CUDA when triton imports, else torch."""
    return "triton" if torch.device(device).type == "cuda" and triton_available() else "torch"


def resolve_backend(name: str | None, device: torch.device) -> str:
    """The switch backend to run on `device`: `name` once checked, or the device's default when None.

    Raises:
        ConfigError: an unknown name (listing the choices), or triton where it cannot run.
    """
    if name is None:
        return default_backend(device)
    if name not in BACKENDS:
        raise ConfigError(f"unknown switch backend {name!r}; choices: {', '.join(BACKENDS)} "
                          "or None (the device's default)")
    if name == "triton":
        _check_triton_runs_on(torch.device(device))
    return name


def _check_triton_runs_on(device: torch.device) -> None:
    if not triton_available():
        raise ConfigError("the triton switch backend needs the triton package, which does not import here; "
                          "install triton or use backend='torch'")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"the triton switch backend needs CUDA (the pair is on {device}), or TRITON_INTERPRET=1 "
                          "set before triton is imported to run it on the CPU interpreter; use backend='torch' "
                          "on the CPU")


class Switcher:
    """Runs one pair's copy plan with any backend; caches device-side tables per device."""

    def __init__(self, plan: CopyPlan, weights_map: WeightsMap):
        self.plan, self.weights_map = plan, weights_map
        self._kernel_runs: KernelRuns | None = None   # the kernel's table, prepared on first use
        self._run_tables: dict[torch.device, KernelRuns] = {}
        self._view_key, self._view_cache = None, {}

    def _runs(self, arena: Arena) -> KernelRuns:
        """The kernel's run table on the arena's device, prepared once per plan (then copied per device)."""
        device = arena.data.device
        if self._kernel_runs is None:
            self._kernel_runs = prepare_runs(self.plan.runs, self.plan.param_runs, arena.data.element_size())
        if device not in self._run_tables:
            self._run_tables[device] = self._kernel_runs.to(device)
        return self._run_tables[device]

    def _views(self, arena: Arena, up: bool, state_rows: int, buffers: bool) -> list[tuple[list, list]]:
        """(destinations, sources) lists per dtype: one strided view pair per map entry, rows stacked.

        Built once per arena storage, row count, direction and buffer choice (re-built after `to()` or
        growing rows)."""
        key = (arena.data.data_ptr(), tuple(arena.data.shape), state_rows)
        if self._view_key != key:
            self._view_key, self._view_cache = key, {}
        if (up, buffers) not in self._view_cache:
            self._view_cache[up, buffers] = self._build_views(arena, up, state_rows, buffers)
        return self._view_cache[up, buffers]

    def _build_views(self, arena: Arena, up: bool, state_rows: int, buffers: bool) -> list[tuple[list, list]]:
        bits = as_bits(arena.data)
        by_dtype: dict[torch.dtype, tuple[list, list]] = {}
        for e in self.weights_map.entries:
            b_slot, m_slot = arena.slots[("base", e.base)], arena.slots[("motivated", e.motivated)]
            if b_slot.kind == "buffer" and not buffers:
                continue
            rows = 1 + state_rows if b_slot.kind == "param" else 1
            base, motivated = _rows_view(bits, b_slot, rows), _rows_view(bits, m_slot, rows)
            b_dims, m_dims = split_chunks(e.chunks, b_slot.shape, m_slot.shape)
            inner = motivated.view(rows, *m_dims)[(slice(None),) + tuple(slice(0, n) for n in b_dims)]
            base = base.view(rows, *b_dims)
            dst, src = (inner, base) if up else (base, inner)
            destinations, sources = by_dtype.setdefault(dst.dtype, ([], []))
            destinations.append(dst)
            sources.append(src)
        return list(by_dtype.values())

    def __call__(self, arena: Arena, up: bool, state_rows: int, backend: str, buffers: bool = True) -> None:
        """Run the plan with `backend`, a name `resolve_backend` has already checked for this device;
        `buffers=False` moves parameters and optimizer state only (each model keeps its BN statistics)."""
        if backend == "triton":
            self._triton(arena, up, state_rows, buffers)
        elif backend == "torch":
            self._torch(arena, up, state_rows, buffers)
        elif backend == "naive":
            self._naive(arena, up, state_rows, buffers)
        else:
            raise AssertionError(f"unresolved switch backend {backend!r}")   # resolve_backend checks names

    def _triton(self, arena: Arena, up: bool, state_rows: int, buffers: bool) -> None:
        copy_runs(arena.data, self._runs(arena), 1 + state_rows, up, buffers=buffers)

    def _torch(self, arena: Arena, up: bool, state_rows: int, buffers: bool) -> None:
        for destinations, sources in self._views(arena, up, state_rows, buffers):
            torch._foreach_copy_(destinations, sources)

    def _naive(self, arena: Arena, up: bool, state_rows: int, buffers: bool) -> None:
        for entry in self.weights_map.entries:
            base_slot, motivated_slot = arena.slots[("base", entry.base)], arena.slots[("motivated", entry.motivated)]
            if base_slot.kind == "buffer" and not buffers:
                continue
            for row in range(1 + state_rows if base_slot.kind == "param" else 1):
                base, motivated = arena.view(base_slot, row), arena.view(motivated_slot, row)
                b_dims, m_dims = split_chunks(entry.chunks, base.shape, motivated.shape)
                inner = motivated.view(m_dims)[tuple(slice(0, b) for b in b_dims)]
                if up:
                    inner.copy_(base.view(b_dims))
                else:
                    base.view(b_dims).copy_(inner)


def _rows_view(bits: torch.Tensor, slot, rows: int) -> torch.Tensor:
    """A slot on the first `rows` rows of the arena's integer view, shaped [rows, *slot.shape], in slot.dtype."""
    t = bits[:rows, slot.offset: slot.offset + slot.units]
    if slot.dtype.itemsize != bits.element_size():
        t = t.view(slot.dtype)
    return t.view(rows, *slot.shape)
