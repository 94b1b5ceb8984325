"""Run copy: the Triton kernel that moves every run of a copy plan on every arena row (the motivation switch).

A run is (base column, motivated column, length, aligned): a contiguous span of arena columns holding one
piece of a base tensor and the motivated slice it maps to (fastmotive/core/copy_plan.py). The host side
(fastmotive/core/kernel_launch.py) prepares the table once per plan: a run whose two columns agree modulo VEC
(16 bytes of columns) is cut into scalar edges and an aligned body (both columns and the length multiples of
VEC, flagged), which moves in 16-byte vector loads and stores; the rest move one column per lane.

Bytes moved: for each parameter run of length L and R copied rows (values + optimizer state rows),
2*L*R*itemsize (read + write); buffer runs move 2*L*itemsize (value row only). The run table adds 32 B per
run, read once per program. Nothing else is read: no per-element indices.

Program p walks run p: for each block of the run it loads the block on every copied row, then stores them
all, so the R loads are in flight together. Row offsets are 64-bit (an int32 row * stride wraps for arenas
past 2^31 elements). The data is passed as an integer view so the copy is bitwise (NaN payloads, int64
buffers viewed as pairs of fp32 columns). `src_col` and `n_param_runs` are not specialised: one compiled
kernel serves both directions, so the first switch down does not compile again.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _copy_run(data_ptr, entry, src_col, stride, param, N_ROWS: tl.constexpr, BLOCK: tl.constexpr,
              VEC: tl.constexpr, ALIGNED: tl.constexpr):
    # Each kind of run reads its columns with loads of its own: multiple_of marks the op that defines a value,
    # so hints on values shared by both kinds would give misaligned runs the vector loads too
    src = tl.load(entry + src_col)
    dst = tl.load(entry + 1 - src_col)
    length = tl.load(entry + 2)
    if ALIGNED:
        src = tl.multiple_of(src, VEC)
        dst = tl.multiple_of(dst, VEC)
        length = tl.multiple_of(length, VEC)
    for start in range(0, length, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < length
        rows_mask = mask & param   # state rows: parameter runs only
        v0 = tl.load(data_ptr + src + offs, mask=mask)
        if N_ROWS > 1:
            v1 = tl.load(data_ptr + stride + src + offs, mask=rows_mask)
        if N_ROWS > 2:
            v2 = tl.load(data_ptr + 2 * stride + src + offs, mask=rows_mask)
        if N_ROWS > 3:
            v3 = tl.load(data_ptr + 3 * stride + src + offs, mask=rows_mask)
        tl.store(data_ptr + dst + offs, v0, mask=mask)
        if N_ROWS > 1:
            tl.store(data_ptr + stride + dst + offs, v1, mask=rows_mask)
        if N_ROWS > 2:
            tl.store(data_ptr + 2 * stride + dst + offs, v2, mask=rows_mask)
        if N_ROWS > 3:
            tl.store(data_ptr + 3 * stride + dst + offs, v3, mask=rows_mask)


@triton.jit(do_not_specialize=["n_param_runs", "src_col"])
def copy_runs_kernel(
    data_ptr,          # integer view of the arena, [rows, row_stride] row-major
    runs_ptr,          # int64 [n_runs, 4]: base column, motivated column, length, aligned (0 or 1)
    n_param_runs,      # runs below this index are copied on all N_ROWS rows, the rest on row 0 only
    row_stride,        # columns per arena row
    src_col,           # 0 to copy base -> motivated, 1 for motivated -> base
    N_ROWS: tl.constexpr,  # rows copied for parameter runs: 1 (values) + optimizer state rows, at most 4
    BLOCK: tl.constexpr,   # columns moved per iteration
    VEC: tl.constexpr,     # columns per 16 bytes: what an aligned run's columns and length are multiples of
):
    pid = tl.program_id(0)
    entry = runs_ptr + pid * 4
    stride = row_stride.to(tl.int64)
    param = pid < n_param_runs
    if tl.load(entry + 3) != 0:   # VEC columns per lane, 16-byte accesses
        _copy_run(data_ptr, entry, src_col, stride, param, N_ROWS, BLOCK, VEC, True)
    else:   # one column per lane: loads and stores share one layout, with no shuffle through shared memory
        _copy_run(data_ptr, entry, src_col, stride, param, N_ROWS, BLOCK // VEC, VEC, False)


def copy_runs_reference(data: torch.Tensor, runs: torch.Tensor, n_param_runs: int, n_rows: int, up: bool) -> None:
    """Plain torch, one run at a time: the reference the kernel is tested against (columns 0-2 of `runs`)."""
    src_col, dst_col = (0, 1) if up else (1, 0)
    for i, (a, b, length) in enumerate(runs[:, :3].tolist()):
        src, dst = (a, b)[src_col], (a, b)[dst_col]
        rows = n_rows if i < n_param_runs else 1
        data[:rows, dst: dst + length] = data[:rows, src: src + length].clone()
