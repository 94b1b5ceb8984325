"""The run-copy kernel against its plain-torch reference on random run tables: on a CPU under
TRITON_INTERPRET=1 (tests/conftest.py sets it), on CUDA when the interpreter is off."""
import os

import numpy as np
import pytest
import torch

pytest.importorskip("triton")
from fastmotive.kernels import copy_runs_reference  # noqa: E402

from fastmotive.core.arena import as_bits  # noqa: E402
from fastmotive.core.kernel_launch import copy_runs, prepare_runs  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip("the kernel runs on CUDA, or on a CPU under TRITON_INTERPRET=1", allow_module_level=True)
DEVICE = torch.device("cpu" if INTERPRETED else "cuda")
BLOCK = 16   # small, so runs span several blocks and most end inside one


def random_runs(rng: np.random.Generator, n_runs: int, columns: int, max_len: int) -> torch.Tensor:
    """Disjoint (base, motivated, length) runs: awkward lengths, base columns in the left half of the row and
    motivated columns in the right half, so no run reads what another writes (the plan's invariant)."""
    half = columns // 2
    lengths = rng.integers(1, max_len + 1, n_runs)
    while lengths.sum() > half:
        lengths = np.maximum(lengths // 2, 1)
    spans = []
    for side in (0, half):   # lay the runs out in a random order, with random gaps, in each half
        order = rng.permutation(n_runs)
        slack = half - lengths.sum()
        gaps = np.diff(np.sort(rng.integers(0, slack + 1, n_runs + 1)))[:n_runs] if n_runs else []
        starts, cursor = np.zeros(n_runs, np.int64), side
        for i, gap in zip(order, gaps):
            starts[i] = cursor + gap
            cursor = starts[i] + lengths[i]
        spans.append(starts)
    return torch.from_numpy(np.stack([spans[0], spans[1], lengths], 1).astype(np.int64))


def run_both(data: torch.Tensor, runs: torch.Tensor, n_param_runs: int, n_rows: int, up: bool):
    """The data after the kernel and after the reference (both on DEVICE, returned on the CPU)."""
    data, runs = data.to(DEVICE), runs.to(DEVICE)
    kernel, reference = data.clone(), data.clone()
    prepared = prepare_runs(runs.cpu().numpy(), n_param_runs, as_bits(data).element_size(), block=BLOCK)
    copy_runs(kernel, prepared.to(DEVICE), n_rows, up)
    copy_runs_reference(reference, runs, n_param_runs, n_rows, up)
    return kernel.cpu(), reference.cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_reference_on_random_run_tables(seed, up, dtype):
    rng = np.random.default_rng(seed)
    rows, columns = int(rng.integers(2, 5)), int(rng.integers(200, 400))
    runs = random_runs(rng, int(rng.integers(1, 12)), columns, max_len=3 * BLOCK + 5)
    n_param_runs, n_rows = int(rng.integers(0, len(runs) + 1)), int(rng.integers(1, rows + 1))
    g = torch.Generator().manual_seed(seed)
    data = (torch.randn(rows, columns, generator=g) if dtype.is_floating_point
            else torch.randint(-2**62, 2**62, (rows, columns), generator=g)).to(dtype)
    kernel, reference = run_both(data, runs, n_param_runs, n_rows, up)
    assert not torch.equal(reference, data)   # the test moves something
    assert torch.equal(as_bits(kernel), as_bits(reference))


@pytest.mark.parametrize("length", [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7])
def test_lengths_around_the_block_size(length):
    data = torch.arange(3 * 200, dtype=torch.float32).view(3, 200)
    runs = torch.tensor([[5, 100, length], [70, 170, 2]], dtype=torch.int64)
    kernel, reference = run_both(data, runs, n_param_runs=1, n_rows=3, up=True)
    assert torch.equal(as_bits(kernel), as_bits(reference))
    assert torch.equal(kernel[1:, 170:172], data[1:, 170:172])   # buffer runs: value row only


def test_nan_payloads_move_bitwise():
    data = torch.randn(2, 64)
    as_bits(data)[0, :8] = 0x7FC00001   # a NaN with a payload: a float copy may canonicalise it
    runs = torch.tensor([[0, 32, 8]], dtype=torch.int64)
    kernel, reference = run_both(data, runs, n_param_runs=1, n_rows=2, up=True)
    assert torch.equal(as_bits(kernel), as_bits(reference))
    assert torch.equal(as_bits(kernel)[0, 32:40], as_bits(data)[0, :8])


def test_an_empty_run_table_changes_nothing():
    data = torch.randn(3, 50)
    kernel, reference = run_both(data, torch.zeros(0, 3, dtype=torch.int64), 0, 3, up=True)
    assert torch.equal(kernel, data) and torch.equal(reference, data)


def test_launcher_names_bad_arguments():
    data = torch.zeros(2, 10, device=DEVICE)
    runs = prepare_runs(np.zeros((1, 3), np.int64), 1, 4).to(DEVICE)
    with pytest.raises(ValueError, match="contiguous 2-D"):
        copy_runs(data.t(), runs, 1, True)
    with pytest.raises(ValueError, match="n_rows=3 outside \\[1, 2\\]"):
        copy_runs(data, runs, 3, True)


@pytest.mark.parametrize("seed", range(4))
def test_prepared_runs_cover_the_same_columns_with_aligned_bodies(seed):
    """The table the kernel reads moves exactly the plan's (source, destination) column pairs, parameter runs
    first, and every run flagged aligned has both columns and its length multiples of the vector width."""
    rng = np.random.default_rng(seed)
    runs = random_runs(rng, 20, 4000, max_len=300).numpy()
    n_param = int(rng.integers(0, 21))
    for itemsize, vec in ((4, 4), (2, 8), (8, 2)):
        prepared = prepare_runs(runs, n_param, itemsize)
        table = prepared.table.numpy()
        assert prepared.vec == vec and table.shape[1] == 4

        def pairs(rows):
            return sorted((a + i, b + i) for a, b, n in rows[:, :3] for i in range(n))
        assert pairs(table[:prepared.param_runs]) == pairs(runs[:n_param])
        assert pairs(table[prepared.param_runs:]) == pairs(runs[n_param:])
        body = table[table[:, 3] == 1]
        assert len(body) and not (body[:, :3] % vec).any()
        assert table[:, 2].min() > 0
