"""BatchNorm calibration against an independent computation from the layers' collected inputs."""
import copy

import pytest
import torch
import torch.distributed as dist
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import fastmotive as fm
from fastmotive.families import cifar_resnet
from fastmotive.training.calibration import Calibration, calibrate_bn, calibrate_pair

SIZES = (5, 7, 6)     # unequal batches
IMAGES = 15           # cuts the last batch to 3


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 10))


def resnet20() -> nn.Module:
    torch.manual_seed(0)
    return cifar_resnet("resnet20", num_classes=10)


def bn1d_mlp() -> nn.Module:
    """BatchNorm1d on [N, C] and on [N, C, L], and one BN without running stats (skipped)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 10), nn.BatchNorm1d(10), nn.ReLU(),
                         nn.BatchNorm1d(10, track_running_stats=False), nn.Unflatten(1, (2, 5)),
                         nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(10, 3))


def timm_cnn() -> nn.Module:
    """timm's BatchNormAct2d, with a Dropout child that must stay off (only the BN itself trains)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8, drop_layer=nn.Dropout),
                         nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def sync_cnn() -> nn.Module:
    return nn.SyncBatchNorm.convert_sync_batchnorm(small_cnn())


def make_batches(sizes=SIZES, hw: int = 8, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, hw, hw, generator=gen) * 2 + 1, torch.randint(0, 10, (n,), generator=gen))
            for n in sizes]


def tracked_bns(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def reference_stats(model: nn.Module, batches, images: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mean, unbiased var) of each BN layer's concatenated inputs over the first `images` images, float64."""
    model = copy.deepcopy(model).eval()
    inputs = {bn: [] for bn in tracked_bns(model)}
    for bn in inputs:
        bn.training, bn.momentum = True, 0.0
        bn.register_forward_hook(lambda m, args, out: inputs[m].append(args[0].detach().clone()))
    left = images
    with torch.no_grad():
        for x, _ in batches:
            if left == 0:
                break
            model(x[:left])
            left -= len(x[:left])
    stats = []
    for collected in inputs.values():
        x = torch.cat(collected).double().transpose(0, 1).flatten(1)
        stats.append((x.mean(1), x.var(1, unbiased=True)))
    return stats


def assert_matches_reference(model: nn.Module, expected) -> None:
    bns = tracked_bns(model)
    assert len(bns) == len(expected)
    for i, (bn, (mean, var)) in enumerate(zip(bns, expected)):
        torch.testing.assert_close(bn.running_mean, mean.float(), msg=lambda m, i=i: f"BN {i} mean: {m}")
        torch.testing.assert_close(bn.running_var, var.float(), msg=lambda m, i=i: f"BN {i} var: {m}")


def randomize_running_stats(model: nn.Module) -> None:
    with torch.no_grad():
        for bn in tracked_bns(model):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2)


# -- 1, 6: against the reference -----------------------------------------------------------------------
@pytest.mark.parametrize("build, hw", [(small_cnn, 8), (resnet20, 16), (bn1d_mlp, 4), (timm_cnn, 8),
                                       (sync_cnn, 8)],
                         ids=["small_cnn", "resnet20", "bn1d_mlp", "timm_bn_act", "sync_bn"])
def test_matches_pooled_statistics_of_layer_inputs(build, hw):
    model, batches = build(), make_batches(hw=hw)
    randomize_running_stats(model)
    expected = reference_stats(model, batches, IMAGES)
    result = calibrate_bn(model, batches, IMAGES)
    assert result == Calibration(layers=len(expected), images=IMAGES)
    assert_matches_reference(model, expected)


def test_sync_batchnorm_without_process_group_is_plain_batchnorm():
    # SyncBatchNorm only synchronises when torch.distributed is initialised; otherwise its forward is plain
    # F.batch_norm (any device), so calibration sees and matches the local statistics (checked above).
    model = sync_cnn()
    assert not (dist.is_available() and dist.is_initialized())
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == 2
    assert calibrate_bn(model, make_batches(), IMAGES) == Calibration(layers=2, images=IMAGES)


def test_bn_children_stay_in_eval_mode():
    model = timm_cnn()
    drop = model[1].drop
    seen = []
    drop.register_forward_hook(lambda m, args, out: seen.append(m.training))
    model.train()
    calibrate_bn(model, make_batches(), IMAGES)
    assert seen == [False] * len(SIZES)
    assert drop.training


def test_uses_all_images_when_batches_run_out():
    model, batches = small_cnn(), make_batches()
    expected = reference_stats(model, batches, sum(SIZES))
    assert calibrate_bn(model, batches, 1000) == Calibration(layers=2, images=sum(SIZES))
    assert_matches_reference(model, expected)


def test_stops_reading_once_enough_images():
    batches = make_batches()

    def loader():
        yield from batches[:2]
        raise AssertionError("read a batch it did not need")

    assert calibrate_bn(small_cnn(), loader(), SIZES[0] + SIZES[1]).images == SIZES[0] + SIZES[1]


# -- 2: nothing else changes -----------------------------------------------------------------------------
def snapshot(model: nn.Module) -> dict:
    """Every tensor's identity, address and bits (running mean/var: identity and address only)."""
    state = {"flags": {name: m.training for name, m in model.named_modules()},
             "momenta": {name: m.momentum for name, m in model.named_modules() if isinstance(m, _BatchNorm)}}
    for name, p in model.named_parameters():
        grad = p.grad
        state[name] = (p, p.data_ptr(), p.detach().clone(),
                       grad, None if grad is None else (grad.data_ptr(), grad.clone()))
    for name, b in model.named_buffers():
        running = name.endswith(("running_mean", "running_var"))
        state[name] = (b, b.data_ptr(), None if running else b.clone())
    return state


def assert_same(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert after["flags"] == before["flags"]
    assert after["momenta"] == before["momenta"]
    for name, p in model.named_parameters():
        p0, ptr, value, grad, grad_state = before[name]
        assert p is p0 and p.data_ptr() == ptr and torch.equal(p.detach(), value), name
        assert p.grad is grad, name
        if grad is not None:
            assert p.grad.data_ptr() == grad_state[0] and torch.equal(p.grad, grad_state[1]), name
    for name, b in model.named_buffers():
        b0, ptr, value = before[name]
        assert b is b0 and b.data_ptr() == ptr, name
        if value is not None:
            assert torch.equal(b, value), name


@pytest.mark.parametrize("training", [True, False], ids=["train_mode", "eval_mode"])
def test_only_running_statistics_change(training):
    model, batches = small_cnn(), make_batches()
    model[1].momentum, model[5].momentum = None, 0.3
    model[1].num_batches_tracked.fill_(7)
    model(batches[0][0]).square().mean().backward()       # grads set everywhere ...
    model[8].bias.grad = None                              # ... but one
    model.train(training)
    model[3].train(not training)                           # a mixed flag is restored too
    randomize_running_stats(model)
    old_means = [bn.running_mean.clone() for bn in tracked_bns(model)]
    before = snapshot(model)
    calibrate_bn(model, batches, IMAGES)
    assert_same(before, model)
    assert all(not torch.equal(bn.running_mean, old) for bn, old in zip(tracked_bns(model), old_means))


def test_exception_leaves_model_as_it_was():
    class FailsOnSecondBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.calls = small_cnn(), 0

        def forward(self, x):
            self.calls += 1
            out = self.body(x)
            if self.calls == 2:
                raise RuntimeError("loader broke")
            return out

    model = FailsOnSecondBatch().train()
    bns = tracked_bns(model)
    bns[0].running_mean[0] = -0.0           # momentum 0 would still turn this into +0.0
    before = snapshot(model)
    stats = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    with pytest.raises(RuntimeError, match="loader broke"):
        calibrate_bn(model, make_batches(), IMAGES)
    assert_same(before, model)
    assert all(not bn._forward_pre_hooks for bn in bns)
    for bn, (mean, var) in zip(bns, stats):
        assert torch.equal(bn.running_mean.view(torch.int32), mean.view(torch.int32))
        assert torch.equal(bn.running_var.view(torch.int32), var.view(torch.int32))


# -- 3: determinism --------------------------------------------------------------------------------------
def test_same_batches_give_bitwise_equal_statistics():
    model, batches = resnet20(), make_batches(hw=16)
    calibrate_bn(model, batches, IMAGES)
    first = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in tracked_bns(model)]
    randomize_running_stats(model)
    calibrate_bn(model, batches, IMAGES)
    for bn, (mean, var) in zip(tracked_bns(model), first):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)


# -- 4: on a pair, only the chosen model's running statistics move ----------------------------------------
@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_names("resnet20", "resnet32", num_classes=10)
    with torch.no_grad():       # non-trivial, different BN buffers in both models
        for name in ("base", "motivated"):
            model = pair.model(name).train()
            for _ in range(3):
                model(torch.randn(4, 3, 16, 16) * 3 + 1)
    return pair


def running_columns(pair: fm.MotivatedPair, which: str) -> dict[str, slice]:
    return {slot.name: slice(slot.offset, slot.offset + slot.units) for slot in pair.arena.slots.values()
            if slot.model == which and slot.name.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("which, other", [("motivated", "base"), ("base", "motivated")])
def test_pair_calibrates_one_model_only(pair, which, other):
    before = pair.arena.data.clone().view(torch.int32)          # bitwise, int64 columns included
    result = calibrate_pair(pair, which, make_batches(hw=16), IMAGES)
    assert result == Calibration(layers=len(tracked_bns(pair.model(which))), images=IMAGES)
    after = pair.arena.data.view(torch.int32)
    columns = running_columns(pair, which)
    allowed = torch.zeros(pair.arena.columns, dtype=torch.bool)
    for cols in columns.values():
        allowed[cols] = True
        assert not torch.equal(after[0, cols], before[0, cols]), f"{which} {cols} did not move"
    changed = after != before
    assert not changed[1:].any(), "optimizer state or grad rows changed"
    assert not changed[0, ~allowed].any(), f"changed outside {which}'s running statistics (e.g. {other})"
    pair.arena.check_bound(full=True)


# -- 5, 7: no BN, bad arguments ---------------------------------------------------------------------------
def test_model_without_batchnorm_runs_nothing():
    class NoBatchNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.LayerNorm(4))

        def forward(self, x):
            raise AssertionError("no forward expected")

    def unread():
        raise AssertionError("batches must not be read")
        yield

    assert calibrate_bn(NoBatchNorm(), unread(), 10) == Calibration(layers=0, images=0)


@pytest.mark.parametrize("images", [0, -3])
def test_nonpositive_images_raise(images):
    with pytest.raises(ValueError, match="positive"):
        calibrate_bn(small_cnn(), make_batches(), images)


def test_no_images_at_all_raises_and_changes_nothing():
    model = small_cnn()
    before = [bn.running_mean.clone() for bn in tracked_bns(model)]
    with pytest.raises(ValueError, match="no images"):
        calibrate_bn(model, [], 10)
    assert all(torch.equal(bn.running_mean, old) for bn, old in zip(tracked_bns(model), before))
