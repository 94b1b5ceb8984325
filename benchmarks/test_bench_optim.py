"""One optimizer step on efficientnet_b0 (1000 classes, 5.3 M parameters): the arena's whole-segment update vs
torch.optim on the same model, foreach, single-tensor and (where the device supports it) fused.

Weight decay follows timm's grouping (no decay on 1-D tensors and biases), as the trainer uses it. Every
candidate starts from the same weights and gradients; before timing, two arena steps are checked against
torch.optim: the arena AdamW (torch's fused kernel over the segment) against ``fused=True`` within 1e-6, SGD
against the single-tensor path, bitwise on the CPU as tests/optim/test_optim.py (`extra_info["bitwise"]` says
whether the bits agreed). Target (issue 5): arena at least 1.5x faster
than foreach on a CPU; `benchmarks/overhead.py` measures that ratio interleaved.

Last result (2026-11-27, 2-core x86_64 CPU, torch 2.14.1, 2 threads): AdamW arena 8.30 ms, foreach 12.41,
single-tensor 16.05, fused 3.92; SGD 4.03, 6.58, 7.42, 1.98 (docs/benchmarks.md).
"""
import functools

import pytest
import timm
import timm.optim
import torch
from _common import DEVICE, median_s, sync

import fastmotive as fm

# "momentum": classical SGD momentum, what torch.optim.SGD does by default (timm's and fastmotive's `sgd` is Nesterov's)
HPARAMS = {"adamw": {"lr": 1e-3, "weight_decay": 0.05},
           "momentum": {"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9}}
TORCH = {"adamw": torch.optim.AdamW, "momentum": torch.optim.SGD}
_arena_medians: dict[str, float] = {}


@functools.cache
def arena_pair(name: str) -> fm.MotivatedPair:
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch("efficientnet_b0:b1", num_classes=1000).to(DEVICE)
    pair.set_state_rows(len(fm.OPTIMIZERS[name].state_rows))
    pair.segment("base").grad.normal_(generator=torch.Generator(DEVICE).manual_seed(1))
    return pair


def reference_model(pair: fm.MotivatedPair) -> torch.nn.Module:
    """A plain timm efficientnet_b0 with the pair's base weights and gradients, in its own tensors."""
    model = timm.create_model("efficientnet_b0", num_classes=1000).to(DEVICE)
    model.load_state_dict(pair.base.state_dict())
    for p, q in zip(model.parameters(), pair.base.parameters()):
        p.grad = q.grad.clone()
    return model


def torch_optimizer(name: str, model: torch.nn.Module, **kw) -> torch.optim.Optimizer:
    h = dict(HPARAMS[name])
    groups = timm.optim.param_groups_weight_decay(model, weight_decay=h.pop("weight_decay"))
    return TORCH[name](groups, **h, **kw)


def arena_optimizer(name: str, pair: fm.MotivatedPair):
    h = dict(HPARAMS[name])
    return fm.create_optimizer(name, pair.segment("base"), lr=h.pop("lr"), **h)


def check_against_reference(name: str) -> bool:
    """Two steps of a fresh arena optimizer vs torch.optim (fused AdamW, single-tensor SGD); returns whether all
    bits agree."""
    pair = arena_pair(name)
    start = pair.arena.data.clone()
    model = reference_model(pair)
    arena = arena_optimizer(name, pair)
    fused = getattr(arena, "fused", False)
    ref = torch_optimizer(name, model, **({"fused": True} if fused else {"foreach": False}))
    for step in (1, 2):
        arena.step(HPARAMS[name]["lr"], step)
        ref.step()
    bitwise = True
    for (pname, got), want in zip(pair.base.named_parameters(), model.parameters()):
        bitwise &= torch.equal(got, want)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7, msg=lambda m, n=pname: f"{name} {n}: {m}")
    if DEVICE.type == "cpu" and not fused:   # the fused kernel rounds the tail of each tensor its own way
        assert bitwise, f"{name}: the arena step must follow torch.optim's single-tensor path bit for bit on a CPU"
    pair.arena.data.copy_(start)
    return bitwise


@pytest.mark.parametrize("name", ["adamw", "momentum"])
def test_arena_matches_torch_optim_on_device(name):
    """Not a benchmark: the arena step follows torch.optim on the benchmark device (gpu_check.sh runs it)."""
    check_against_reference(name)


@pytest.mark.parametrize("impl", ["arena", "foreach", "single_tensor", "fused"])
@pytest.mark.parametrize("name", ["adamw", "momentum"])
def test_optimizer_step(benchmark, name, impl):
    benchmark.group = f"optimizer step {name} efficientnet_b0"
    pair = arena_pair(name)
    if impl == "arena":
        benchmark.extra_info["bitwise"] = check_against_reference(name)   # correctness, outside timing
        opt = arena_optimizer(name, pair)
        lr, step = HPARAMS[name]["lr"], [0]

        def one_step():
            step[0] += 1
            opt.step(lr, step[0])
            sync()
    else:
        kw = {"foreach": {"foreach": True}, "single_tensor": {"foreach": False}, "fused": {"fused": True}}[impl]
        try:
            opt = torch_optimizer(name, reference_model(pair), **kw)
            opt.step()
        except (RuntimeError, ValueError) as e:
            pytest.skip(f"torch.optim {name} {impl} is not supported on {DEVICE.type}: {e}")

        def one_step():
            opt.step()
            sync()
    start = pair.arena.data.clone()
    benchmark.pedantic(one_step, rounds=20, warmup_rounds=3)
    pair.arena.data.copy_(start)
    benchmark.extra_info.update(params=pair.segment("base").param.numel(), device=str(DEVICE),
                                torch_threads=torch.get_num_threads())
    median = median_s(benchmark)
    if impl == "arena" and median:
        _arena_medians[name] = median
    elif median and name in _arena_medians:
        benchmark.extra_info["x_arena"] = round(median / _arena_medians[name], 3)   # > 1: the arena is faster
