"""Run copy: the Triton kernel that moves every run of a copy plan on every arena row (the motivation switch).

A run is (base column, motivated column, length): a contiguous span of arena columns holding one piece of a
base tensor and the motivated slice it maps to (fastmotive/copy_plan.py).

Bytes moved: for each parameter run of length L and R copied rows (values + optimizer state rows),
2*L*R*itemsize (read + write); buffer runs move 2*L*itemsize (value row only). The run table adds
24 B per run, read once per program. Nothing else is read: no per-element indices.

Program p walks run p (split at plan time to at most MAX_RUN columns, so programs are balanced):
for each BLOCK of the run and each row, load the source columns and store them at the destination.
The data is passed as an integer view so the copy is bitwise (NaN payloads, int64 buffers viewed as
pairs of fp32 columns).
"""
import torch
import triton
import triton.language as tl

from fastmotive.arena import as_bits


@triton.jit
def copy_runs_kernel(
    data_ptr,          # integer view of the arena, [rows, row_stride] row-major
    runs_ptr,          # int64 [n_runs, 3]: base column, motivated column, length
    n_param_runs,      # runs below this index are copied on all `n_rows` rows, the rest on row 0 only
    row_stride,        # columns per arena row
    n_rows,            # rows copied for parameter runs: 1 (values) + optimizer state rows
    src_col,           # 0 to copy base -> motivated, 1 for motivated -> base
    BLOCK: tl.constexpr,   # columns moved per iteration
):
    pid = tl.program_id(0)
    src = tl.load(runs_ptr + pid * 3 + src_col)
    dst = tl.load(runs_ptr + pid * 3 + (1 - src_col))
    length = tl.load(runs_ptr + pid * 3 + 2)
    rows = tl.where(pid < n_param_runs, n_rows, 1)
    for start in range(0, length, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < length
        for r in range(rows):
            row = data_ptr + r * row_stride
            values = tl.load(row + src + offs, mask=mask)
            tl.store(row + dst + offs, values, mask=mask)


def copy_runs(data: torch.Tensor, runs: torch.Tensor, n_param_runs: int, n_rows: int, up: bool,
              block: int = 512) -> None:
    """Copy every run of `runs` within `data` in place, base -> motivated if `up` else back.

    Args:
        data: the arena, 2-D contiguous [rows, columns].
        runs: int64 [n, 3] contiguous on data's device (base column, motivated column, length).
        n_param_runs: leading runs copied on rows [0, n_rows); the others on row 0.
        n_rows: rows copied for parameter runs.
    """
    if data.dim() != 2 or not data.is_contiguous():
        raise ValueError(f"copy_runs: arena data must be a contiguous 2-D tensor, got shape {tuple(data.shape)}")
    if runs.dtype != torch.int64 or runs.dim() != 2 or runs.shape[1] != 3 or not runs.is_contiguous():
        raise ValueError(f"copy_runs: runs must be a contiguous int64 [n, 3] tensor, got {runs.dtype} "
                         f"{tuple(runs.shape)}")
    if runs.device != data.device:
        raise ValueError(f"copy_runs: runs are on {runs.device} but the arena is on {data.device}")
    if not 1 <= n_rows <= data.shape[0]:
        raise ValueError(f"copy_runs: n_rows={n_rows} outside [1, {data.shape[0]}]")
    if len(runs) == 0:
        return
    copy_runs_kernel[(len(runs),)](as_bits(data), runs, n_param_runs, data.shape[1], n_rows, 0 if up else 1,
                                   BLOCK=block)


def copy_runs_reference(data: torch.Tensor, runs: torch.Tensor, n_param_runs: int, n_rows: int, up: bool) -> None:
    """Plain torch, one run at a time: the reference the kernel is tested against."""
    src_col, dst_col = (0, 1) if up else (1, 0)
    for i, (a, b, length) in enumerate(runs.tolist()):
        src, dst = (a, b)[src_col], (a, b)[dst_col]
        rows = n_rows if i < n_param_runs else 1
        data[:rows, dst: dst + length] = data[:rows, src: src + length].clone()
