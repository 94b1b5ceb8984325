"""The flat arena: views, segments, the guard, device moves, and bad input."""
import pytest
import torch
from torch import nn

import fastmotive as fm


def small_pair():
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    mot = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    return fm.MotivatedPair(base, mot)


def test_values_are_preserved_when_packing():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    mot = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5))
    base[1].running_mean.normal_()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    fm.MotivatedPair(base, mot)
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_everything_is_a_view_into_one_buffer():
    pair = small_pair()
    storage = pair.arena.data.untyped_storage().data_ptr()
    for model in (pair.base, pair.motivated):
        for t in list(model.parameters()) + list(model.buffers()) + [p.grad for p in model.parameters()]:
            assert t.untyped_storage().data_ptr() == storage
    assert pair.base[1].num_batches_tracked.dtype == torch.int64


def test_backward_accumulates_into_the_grad_row_and_bn_updates_in_place():
    pair = small_pair()
    x = torch.randn(4, 3, 6, 6)
    pair.base(x).sum().backward()
    seg = pair.segment("base")
    assert seg.grad.abs().sum() > 0
    assert torch.equal(seg.grad[: pair.base[0].weight.numel()], pair.base[0].weight.grad.flatten())
    assert pair.base[1].num_batches_tracked.item() == 1
    pair.arena.check_bound()


def test_segments_cover_each_models_parameters():
    pair = small_pair()
    for name, model in (("base", pair.base), ("motivated", pair.motivated)):
        seg = pair.segment(name)
        assert sum(s.numel for s in seg.slots) == sum(p.numel() for p in model.parameters())
        for s, p in zip(seg.slots, model.parameters()):
            assert torch.equal(seg.param[s.offset: s.offset + s.numel], p.detach().flatten())
        assert seg.state.shape[0] >= 2


def test_state_rows_grow_and_keep_views():
    pair = small_pair()
    pair.arena.data[1].fill_(3.0)
    w = pair.base[0].weight
    before = w.detach().clone()
    pair.set_state_rows(3)
    assert pair.arena.data.shape[0] == 5
    assert torch.equal(w, before) and pair.arena.data[1].eq(3.0).all()
    pair.arena.check_bound()


@pytest.mark.parametrize("how", ["double", "assign", "data"])
def test_guard_names_a_detached_parameter(how):
    pair = small_pair()
    if how == "double":
        pair.base.double()
    elif how == "assign":
        state = {k: v.clone() for k, v in pair.base.state_dict().items()}
        pair.base.load_state_dict(state, assign=True)
    else:
        pair.base[4].weight.data = torch.zeros(2, 4)
    with pytest.raises(fm.ArenaError, match=r"base.*(weight|bias|num_batches_tracked|running_mean).* no longer a view into the arena"):
        pair.arena.check_bound(full=True)
        pair.switch_to("motivated")


def test_guard_blocks_switch_after_data_assignment():
    pair = small_pair()
    pair.base[4].weight.data = torch.zeros(2, 4)
    with pytest.raises(fm.ArenaError, match=r"base\.4\.weight"):
        pair.switch_to("motivated")


def test_switch_to_rejects_unknown_names():
    pair = small_pair()
    with pytest.raises(ValueError, match="base, motivated"):
        pair.switch_to("big")
    with pytest.raises(ValueError, match="triton, torch, naive"):
        pair.switch_to("motivated", backend="cuda")


def test_models_with_different_dtypes_are_refused():
    base = nn.Linear(2, 2).double()
    with pytest.raises(fm.ArenaError, match="weight.*float32.*float64|float64"):
        fm.MotivatedPair(base, nn.Linear(2, 3))


@pytest.mark.gpu
def test_move_to_cuda_keeps_views_and_switches_bitwise():
    pair = small_pair()
    pair.arena.data.normal_()
    cpu = pair.arena.data.clone()
    pair.to("cuda")
    assert pair.base[0].weight.is_cuda and pair.base[0].weight.grad.is_cuda
    pair.arena.check_bound()
    pair.switch_to("motivated", backend="triton")
    ref = small_pair()
    ref.arena.data.copy_(cpu)
    ref.switch_to("motivated", backend="naive")
    assert torch.equal(pair.arena.data.cpu().view(torch.int32), ref.arena.data.view(torch.int32))


def test_models_on_different_devices_are_refused():
    base = nn.Linear(2, 2)
    mot = nn.Linear(2, 3, device="meta")
    with pytest.raises(fm.ArenaError, match=r"motivated parameter 'weight' is on meta"):
        fm.MotivatedPair(base, mot)
