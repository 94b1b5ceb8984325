"""Switch backends: execute a copy plan on an arena, up (base -> motivated) or down (motivated -> base).

- ``triton``: one kernel launch over every run of every row (kernels/segment_copy.py); default on CUDA.
- ``torch``:  per copied row, one gather (index_select) and one scatter_ over precomputed element
              indices (parameters on the value and state rows, buffers on the value row); default on
              CPU. Indices are built once per device.
- ``naive``:  per-tensor slice copies of every parameter, buffer and state row, straight from the
              weights map (not from the plan): the independent reference for tests and benchmarks.
All three are bitwise identical: they move bits through an integer view, never through arithmetic.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .arena import Arena
from .plan import CopyPlan
from .weights_map import WeightsMap, split_chunks

BACKENDS = ("triton", "torch", "naive")
_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def default_backend(device: torch.device) -> str:
    return "triton" if device.type == "cuda" and triton_available() else "torch"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _run_indices(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand runs to element indices (base columns, motivated columns)."""
    lengths = runs[:, 2]
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(runs[:, 0], lengths) + within, np.repeat(runs[:, 1], lengths) + within


class Switcher:
    """Runs one pair's copy plan with any backend; caches device-side tables per device."""

    def __init__(self, plan: CopyPlan, weights_map: WeightsMap):
        self.plan, self.weights_map = plan, weights_map
        self._tables: dict[torch.device, dict[str, torch.Tensor]] = {}

    def _table(self, device: torch.device, key: str) -> torch.Tensor:
        """Device-side tables, built on first use: the run table, or element indices of one kind's runs.

        Gather indices are int32 (index_select reads half the index bytes: 3x faster on CPU than int64);
        scatter_ needs int64.
        """
        tables = self._tables.setdefault(device, {})
        if key not in tables:
            if key == "runs":
                tables[key] = torch.from_numpy(self.plan.runs).to(device)
            else:
                kind, side, dtype = key.split("_")
                runs = self.plan.runs
                part = runs[: self.plan.param_runs] if kind == "param" else runs[self.plan.param_runs:]
                index = _run_indices(part)[0 if side == "base" else 1]
                if len(index) and index.max() >= 2**31:   # beyond int32: gather with int64 indices too
                    dtype = "int64"
                tables[key] = torch.from_numpy(index).to(device, getattr(torch, dtype))
        return tables[key]

    def __call__(self, arena: Arena, up: bool, state_rows: int, backend: str) -> None:
        if backend == "triton":
            self._triton(arena, up, state_rows)
        elif backend == "torch":
            self._torch(arena, up, state_rows)
        elif backend == "naive":
            self._naive(arena, up, state_rows)
        else:
            raise ValueError(f"unknown switch backend {backend!r}; choices: {', '.join(BACKENDS)} or None (auto)")

    def _triton(self, arena: Arena, up: bool, state_rows: int) -> None:
        if arena.data.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("the triton switch backend needs CUDA, or TRITON_INTERPRET=1 set before triton is "
                               "imported to run it on the CPU interpreter; use backend='torch' on the CPU")
        from .kernels import segment_copy
        segment_copy(arena.data, self._table(arena.data.device, "runs"), self.plan.param_runs, 1 + state_rows, up)

    def _torch(self, arena: Arena, up: bool, state_rows: int) -> None:
        bits = arena.data.view(_INT_VIEW[arena.data.element_size()])
        src, dst = ("base", "motivated") if up else ("motivated", "base")
        for kind, rows in (("param", range(1 + state_rows)), ("buffer", [0])):
            gather = self._table(bits.device, f"{kind}_{src}_int32")
            scatter = self._table(bits.device, f"{kind}_{dst}_int64")
            if len(gather):
                for row in rows:
                    bits[row].scatter_(0, scatter, bits[row].index_select(0, gather))

    def _naive(self, arena: Arena, up: bool, state_rows: int) -> None:
        for entry in self.weights_map.entries:
            base_slot, motivated_slot = arena.slots[("base", entry.base)], arena.slots[("motivated", entry.motivated)]
            for row in range(1 + state_rows if base_slot.kind == "param" else 1):
                base, motivated = arena.view(base_slot, row), arena.view(motivated_slot, row)
                b_dims, m_dims = split_chunks(entry.chunks, base.shape, motivated.shape)
                inner = motivated.view(m_dims)[tuple(slice(0, b) for b in b_dims)]
                if up:
                    inner.copy_(base.view(b_dims))
                else:
                    base.view(b_dims).copy_(inner)

