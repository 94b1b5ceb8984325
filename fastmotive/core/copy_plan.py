"""The copy plan: a weights map compiled once into contiguous runs of arena columns.

A run is (base column, motivated column, length). Switching up copies every run base -> motivated,
switching down motivated -> base. Parameter runs are copied on the value row and on every used
optimizer-state row; buffer runs on the value row only. For b0:b2 (1000 classes) that is about
20 k runs of about 1 KB: far fewer descriptors than elements, so a run-walking kernel reads little
besides the data itself. (The data loaders' per-epoch sample order is another plan: data/epoch_plan.py.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastmotive.core.arena import Arena
from fastmotive.core.weights_map import MapEntry, WeightsMap, split_chunks
from fastmotive.errors import WeightsMapError

MAX_RUN = 4096   # runs are split so one GPU program never walks more than this many columns


@dataclass(frozen=True)
class CopyPlan:
    runs: np.ndarray          # int64 [n, 3]: base column, motivated column, length; parameter runs first
    param_runs: int           # runs [:param_runs] are parameter runs (copied on state rows too)

    @property
    def elements(self) -> int:
        """Arena columns moved per copied row (parameter and buffer columns)."""
        return int(self.runs[:, 2].sum())

    def param_elements(self) -> int:
        return int(self.runs[: self.param_runs, 2].sum())

    def bytes_moved(self, state_rows: int, itemsize: int) -> int:
        """Bytes read plus written by one switch copying the value row and `state_rows` state rows."""
        columns = self.param_elements() * (1 + state_rows) + (self.elements - self.param_elements())
        return 2 * columns * itemsize


def entry_runs(entry: MapEntry, base_shape, motivated_shape, base_offset: int, motivated_offset: int,
               units_per_element: int = 1) -> np.ndarray:
    """The contiguous runs of one entry as an int64 [n, 3] array (base col, motivated col, length)."""
    b_dims, m_dims = split_chunks(entry.chunks, base_shape, motivated_shape)
    if math.prod(b_dims) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    b_strides = np.cumprod([1] + b_dims[::-1])[:-1][::-1]
    m_strides = np.cumprod([1] + m_dims[::-1])[:-1][::-1]
    # Inner dims where base == motivated are copied whole; the first unequal dim from the right ends the run.
    split = len(b_dims)
    while split > 0 and b_dims[split - 1] == m_dims[split - 1]:
        split -= 1
    k = max(split - 1, 0)              # dims [k:] form one run per index of dims [:k]
    length = math.prod(b_dims[k:])
    grids = np.indices(b_dims[:k]).reshape(k, -1) if k else np.zeros((0, 1), dtype=np.int64)
    src = (grids * b_strides[:k, None]).sum(0) if k else np.zeros(1, dtype=np.int64)
    dst = (grids * m_strides[:k, None]).sum(0) if k else np.zeros(1, dtype=np.int64)
    u = units_per_element
    runs = np.stack([base_offset + src * u, motivated_offset + dst * u, np.full_like(src, length * u)], 1)
    return runs.astype(np.int64)


def _merge_and_split(runs: np.ndarray, max_run: int) -> np.ndarray:
    """Merge runs that continue each other in both columns, then split long runs into max_run pieces."""
    if len(runs) == 0:
        return runs.reshape(0, 3)
    runs = runs[np.argsort(runs[:, 0], kind="stable")]
    continues = (runs[1:, 0] == runs[:-1, 0] + runs[:-1, 2]) & (runs[1:, 1] == runs[:-1, 1] + runs[:-1, 2])
    starts = np.flatnonzero(np.concatenate([[True], ~continues]))
    lengths = np.add.reduceat(runs[:, 2], starts)
    merged = np.stack([runs[starts, 0], runs[starts, 1], lengths], 1)
    pieces = -(-merged[:, 2] // max_run)
    rep = np.repeat(merged, pieces, axis=0)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    step = (np.arange(len(rep)) - first) * max_run
    return np.stack([rep[:, 0] + step, rep[:, 1] + step, np.minimum(rep[:, 2] - step, max_run)], 1)


def compile_plan(weights_map: WeightsMap, arena: Arena, max_run: int = MAX_RUN) -> CopyPlan:
    """Compile a weights map against an arena's layout."""
    itemsize = arena.dtype.itemsize
    groups = {"param": [], "buffer": []}
    for e in weights_map.entries:
        b, m = arena.slots[("base", e.base)], arena.slots[("motivated", e.motivated)]
        if b.kind != m.kind or b.dtype != m.dtype:
            raise WeightsMapError(f"{e.base!r} ({b.kind}, {b.dtype}) -> {e.motivated!r} ({m.kind}, {m.dtype}): "
                                  "kind and dtype must match")
        units = b.dtype.itemsize // itemsize
        groups[b.kind].append(entry_runs(e, b.shape, m.shape, b.offset, m.offset, units))
    params, buffers = (_merge_and_split(np.concatenate(g) if g else np.zeros((0, 3), np.int64), max_run)
                       for g in (groups["param"], groups["buffer"]))
    return CopyPlan(np.ascontiguousarray(np.concatenate([params, buffers]).astype(np.int64)), len(params))

