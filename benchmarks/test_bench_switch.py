"""Switch latency per backend (triton on CUDA, torch, naive) against a same-size device copy, with AdamW state.

One timed call is one switch, alternating up (base -> motivated) and down. Bytes moved = 2 (read + write)
x (mapped parameter elements x 3 rows + mapped buffer columns) x 4 B; `extra_info` holds them, the GB/s and
the ratio to the copy floor (`test_copy_floor`, same bytes, one contiguous `copy_`). Before timing, each
backend's round trip is checked bitwise against the naive backend on a randomised arena (values, state rows
and gradients), and `test_backends_bitwise_on_device` checks every backend against naive on the benchmark
device (on CUDA: Triton vs torch vs naive, which the CPU test-suite can only run in the interpreter).

Last result (2026-11-27, 2-core x86_64 CPU, torch 2.14.1, 2 threads): torch backend 5.5 / 12.6 / 6.4 ms for b0:b2 /
resnet18:34 / vit, 1.48 / 1.10 / 1.43x the copy floor; docs/benchmarks.md (benchmarks/switch_latency.py prints
the same table).
"""
import functools

import pytest
import torch
from _common import DEVICE, median_s, sync, triton_timeable

import fastmotive as fm

PAIRS = {
    "efficientnet_b0:b2": {},
    "resnet18:34": {},
    "vit_tiny_patch16_224:vit_small_patch16_224": {"img_size": 32},
}
BACKENDS = ["triton", "torch", "naive"]


@functools.cache
def built(spec: str) -> fm.MotivatedPair:
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch(spec, num_classes=1000, **PAIRS[spec]).to(DEVICE)
    pair.set_state_rows(2)   # AdamW: exp_avg, exp_avg_sq
    return pair


def randomised(spec: str, seed: int = 0) -> fm.MotivatedPair:
    pair = built(spec)
    pair.switch_to("base", backend="naive")   # a no-op unless an earlier benchmark left it motivated
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    pair.arena.data.copy_(torch.randn(pair.arena.data.shape, generator=g, device=DEVICE))
    return pair


def round_trip(pair: fm.MotivatedPair, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Arena bits after a switch up, and after changing every value and switching down."""
    pair.switch_to("motivated", backend)
    up = pair.arena.data.clone()
    pair.arena.data[:-1].mul_(-2.0)
    pair.switch_to("base", backend)
    return up, pair.arena.data.clone()


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32)


def skip_unless_runnable(backend: str) -> None:
    if backend == "triton" and not triton_timeable():
        pytest.skip("the triton backend is timed on CUDA only (never in the interpreter)")


def assert_matches_naive(spec: str, backend: str) -> None:
    start = randomised(spec).arena.data.clone()
    got = round_trip(built(spec), backend)
    built(spec).arena.data.copy_(start)
    want = round_trip(built(spec), "naive")
    for label, a, b in zip(("up", "down"), got, want):
        assert torch.equal(bits(a), bits(b)), f"{spec}: {backend} differs from naive after the switch {label}"


@pytest.mark.parametrize("spec", PAIRS)
def test_backends_bitwise_on_device(spec):
    """Not a benchmark: every backend that runs on this device agrees bitwise with naive (gpu_check.sh)."""
    for backend in BACKENDS[:-1]:
        if backend == "triton" and not triton_timeable():
            continue
        assert_matches_naive(spec, backend)


def _record(benchmark, pair: fm.MotivatedPair, floor_s: float | None = None) -> None:
    nbytes = pair.plan.bytes_moved(state_rows=2, itemsize=pair.arena.data.element_size())
    info = benchmark.extra_info
    info.update(bytes=nbytes, runs=len(pair.plan.runs), device=str(DEVICE))
    median = median_s(benchmark)
    if median:
        info["gb_per_s"] = round(nbytes / median / 1e9, 2)
        if floor_s:
            info["x_copy_floor"] = round(median / floor_s, 2)


_floors: dict[str, float] = {}


@pytest.mark.parametrize("spec", PAIRS)
def test_copy_floor(benchmark, spec):
    """The floor: one contiguous device copy of the bytes a switch moves."""
    benchmark.group = f"switch {spec}"
    pair = built(spec)
    nbytes = pair.plan.bytes_moved(state_rows=2, itemsize=pair.arena.data.element_size())
    src = torch.ones(nbytes // 2, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)
        sync()
    benchmark.pedantic(copy, rounds=30, warmup_rounds=3)
    assert torch.equal(dst[:: max(1, dst.numel() // 4096)], src[:: max(1, src.numel() // 4096)])
    if median_s(benchmark):
        _floors[spec] = median_s(benchmark)
    _record(benchmark, pair)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", PAIRS)
def test_switch(benchmark, spec, backend):
    skip_unless_runnable(backend)
    benchmark.group = f"switch {spec}"
    assert_matches_naive(spec, backend)   # correctness, outside the timed calls
    pair = built(spec)
    pair.switch_to("base", "naive")

    def one_switch():   # alternates up and down
        pair.switch_to("motivated" if pair.active == "base" else "base", backend)
        sync()
    benchmark.pedantic(one_switch, rounds=10 if backend == "naive" else 30, warmup_rounds=2)
    pair.switch_to("base", backend)
    _record(benchmark, pair, _floors.get(spec))
