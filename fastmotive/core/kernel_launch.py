"""The host side of the switch kernel (fastmotive.kernels.run_copy): the run table prepared once per plan
(aligned bodies cut out, a block size from the run lengths), the argument checks, the launch on the arena's
device. The kernel module holds device code only; the bit view it needs comes from the arena."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from fastmotive.core.arena import as_bits

MAX_ROWS = 4   # the kernel copies at most the value row and three optimizer state rows


@dataclass(frozen=True)
class KernelRuns:
    """A plan's runs as the kernel reads them: int64 [n, 4] (base column, motivated column, length, aligned),
    parameter runs first; the block size and the 16-byte vector width in columns."""
    table: torch.Tensor
    param_runs: int
    block: int
    vec: int

    def to(self, device) -> KernelRuns:
        return KernelRuns(self.table.to(device), self.param_runs, self.block, self.vec)


def prepare_runs(runs, param_runs: int, itemsize: int, block: int | None = None) -> KernelRuns:
    """Cut every run whose two columns agree modulo VEC (16 bytes of columns of `itemsize` bytes) into a scalar
    head, an aligned body and a scalar tail, keeping parameter runs first; `block` (default: from the run
    lengths) is the columns one program moves per step."""
    runs = np.asarray(runs, dtype=np.int64).reshape(-1, 3)
    vec = max(16 // itemsize, 1)
    params, buffers = (_split_aligned(part, vec) for part in (runs[:param_runs], runs[param_runs:]))
    table = np.concatenate([params, buffers]) if len(runs) else np.zeros((0, 4), np.int64)
    return KernelRuns(torch.from_numpy(np.ascontiguousarray(table)), len(params),
                      block or block_for(table[:, 2], vec), vec)


def _split_aligned(runs: np.ndarray, vec: int) -> np.ndarray:
    a, b, length = runs[:, 0], runs[:, 1], runs[:, 2]
    same = (a % vec) == (b % vec)
    head = np.where(same, (-a) % vec, length).clip(max=length)
    body = np.where(same, (length - head) // vec * vec, 0)
    tail = length - head - body
    pieces = [np.stack([a, b, head, np.zeros_like(a)], 1),
              np.stack([a + head, b + head, body, np.ones_like(a)], 1),
              np.stack([a + head + body, b + head + body, tail, np.zeros_like(a)], 1)]
    table = np.stack(pieces, 1).reshape(-1, 4)
    return table[table[:, 2] > 0]


def block_for(lengths: np.ndarray, vec: int) -> int:
    """A power of two near the 75th percentile of the run lengths, from one warp of 16-byte vectors (32 * vec
    columns) to 1024: most runs take one step, and short ones waste few lanes."""
    if len(lengths) == 0:
        return 32 * vec
    return int(min(max(2 ** int(np.ceil(np.log2(max(np.percentile(lengths, 75), 1)))), 32 * vec), 1024))


def copy_runs(data: torch.Tensor, runs: KernelRuns, n_rows: int, up: bool, buffers: bool = True) -> None:
    """Copy every run within `data` in place, base -> motivated if `up` else back: parameter runs on rows
    [0, n_rows), buffer runs (unless `buffers` is False) on row 0.

    Args:
        data: the arena, 2-D contiguous [rows, columns].
        runs: `prepare_runs`' table, on data's device.
        n_rows: rows copied for parameter runs.
    """
    table = runs.table
    if data.dim() != 2 or not data.is_contiguous():
        raise ValueError(f"copy_runs: arena data must be a contiguous 2-D tensor, got shape {tuple(data.shape)}")
    if table.device != data.device:
        raise ValueError(f"copy_runs: runs are on {table.device} but the arena is on {data.device}")
    if not 1 <= n_rows <= min(data.shape[0], MAX_ROWS):
        raise ValueError(f"copy_runs: n_rows={n_rows} outside [1, {min(data.shape[0], MAX_ROWS)}]")
    count = len(table) if buffers else runs.param_runs
    if count == 0:
        return
    from fastmotive.kernels import copy_runs_kernel  # imports triton: only when the kernel runs
    bits = as_bits(data)
    on_device = torch.cuda.device(data.device) if data.is_cuda else contextlib.nullcontext()
    warps = max(1, min(8, runs.block // (32 * runs.vec)))   # one vector per lane of the block
    with on_device:   # the arena's GPU, not the current one (--device cuda:1)
        copy_runs_kernel[(count,)](bits, table, runs.param_runs, data.shape[1], 0 if up else 1, N_ROWS=n_rows,
                                   BLOCK=runs.block, VEC=runs.vec, num_warps=warps)
