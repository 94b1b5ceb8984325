"""Property tests: a compiled plan moves exactly the elements an element-wise reference moves."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmotive.core.copy_plan import _merge_and_split, entry_runs
from fastmotive.core.weights_map import MapEntry


@st.composite
def nested_shapes(draw):
    ndim = draw(st.integers(1, 4))
    chunks, base, mot = [], [], []
    for d in range(ndim):
        c = draw(st.sampled_from([1, 1, 2, 3])) if d == 0 else 1
        b = draw(st.integers(0 if c == 1 else 1, 5)) * (max(1, c))
        extra = draw(st.integers(0, 3)) * c
        chunks.append(c)
        base.append(b)
        mot.append(b + extra)
    return tuple(chunks), tuple(base), tuple(mot)


def elementwise_reference(chunks, base, mot, base_off, mot_off):
    """(base flat index + offset, motivated flat index + offset) for every base element."""
    pairs = []
    for idx in np.ndindex(*base):
        m_idx = [(i // (b // c)) * (m // c) + i % (b // c) for i, c, b, m in zip(idx, chunks, base, mot)]
        pairs.append((base_off + np.ravel_multi_index(idx, base), mot_off + np.ravel_multi_index(m_idx, mot)))
    return sorted(pairs)


def expand(runs):
    return sorted((int(a + i), int(b + i)) for a, b, n in runs for i in range(n))


@settings(max_examples=150, deadline=None)
@given(nested_shapes(), st.integers(0, 100), st.integers(0, 100), st.integers(1, 7))
def test_entry_runs_match_elementwise_map(shapes, base_off, mot_off, max_run):
    chunks, base, mot = shapes
    entry = MapEntry("a", "a", "param", chunks)
    runs = entry_runs(entry, base, mot, base_off, 1000 + mot_off)
    ref = elementwise_reference(chunks, base, mot, base_off, 1000 + mot_off)
    assert expand(runs) == ref
    split = _merge_and_split(runs, max_run)
    assert expand(split) == ref
    assert (split[:, 2] <= max_run).all() and (split[:, 2] > 0).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=8))
def test_adjacent_runs_merge(pieces):
    """Runs that continue each other in both columns become one run; gaps keep them apart."""
    runs, a, b = [], 0, 500
    for length, gap in pieces:
        runs.append((a, b, length))
        a, b = a + length + gap, b + length + gap
    merged = _merge_and_split(np.array(runs, dtype=np.int64), 10_000)
    assert expand(merged) == expand(runs)
    assert len(merged) == 1 + sum(1 for _, gap in pieces[:-1] if gap)
