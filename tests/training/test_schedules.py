"""LR schedules against hand-computed values."""

import math

import pytest

from fastmotive.training.schedules import SCHEDULES, make_schedule


def test_constant_with_warmup():
    # 2 epochs of 5 steps warmup = 10 steps from 0.01 to 0.1: +0.009 per step
    lr = make_schedule("constant", lr=0.1, total_steps=100, steps_per_epoch=5, warmup_epochs=2, warmup_lr=0.01)
    assert [lr(s) for s in (0, 1, 5, 9)] == pytest.approx([0.01, 0.019, 0.055, 0.091])
    assert [lr(s) for s in (10, 50, 99, 1000)] == [0.1] * 4


def test_cosine_without_warmup():
    lr = make_schedule("cosine", lr=1.0, total_steps=8, steps_per_epoch=4, min_lr=0.2)
    # min_lr + (lr - min_lr) * (1 + cos(pi * t / 8)) / 2
    expected = [1.0, 0.2 + 0.4 * (1 + math.cos(math.pi / 8)), 0.2 + 0.4 * (1 + math.cos(math.pi / 4)),
                0.2 + 0.4 * (1 + math.cos(3 * math.pi / 8)), 0.6]
    assert [lr(s) for s in range(5)] == pytest.approx(expected)
    assert lr(8) == pytest.approx(0.2)
    assert lr(100) == pytest.approx(0.2)  # stays at the floor past total_steps


def test_cosine_decays_over_the_steps_after_warmup():
    # warmup 0.5 epoch of 4 steps = 2 steps (0 -> 0.5 -> 1.0), then a cosine over 10 - 2 = 8 steps
    lr = make_schedule("cosine", lr=1.0, total_steps=10, steps_per_epoch=4, warmup_epochs=0.5)
    assert [lr(0), lr(1)] == pytest.approx([0.0, 0.5])
    assert lr(2) == pytest.approx(1.0)
    assert lr(6) == pytest.approx(0.5)  # half way: t = 4 of 8
    assert lr(10) == pytest.approx(0.0)


def test_step_decays_every_decay_epochs():
    lr = make_schedule("step", lr=0.1, total_steps=1000, steps_per_epoch=10, decay_epochs=2, decay_rate=0.5)
    # epoch = step / 10; lr * 0.5 ** floor(epoch / 2)
    assert [lr(s) for s in (0, 19, 20, 39, 40, 65)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])


def test_step_with_fractional_decay_epochs_and_warmup():
    # timm's EfficientNet recipe decays every 2.4 epochs; here 2.5 epochs of 4 steps = every 10 steps.
    lr = make_schedule("step", lr=0.2, total_steps=100, steps_per_epoch=4, decay_epochs=2.5, decay_rate=0.97,
                       warmup_epochs=1, warmup_lr=0.0)
    assert [lr(s) for s in (0, 2)] == pytest.approx([0.0, 0.1])  # warmup: 4 steps
    assert [lr(s) for s in (4, 9, 10, 29, 30)] == pytest.approx([0.2, 0.2, 0.194, 0.2 * 0.97**2, 0.2 * 0.97**3])


def test_warmup_rounds_to_the_nearest_step():
    # 0.25 epoch of 10 steps = 2.5 steps -> 3 steps
    lr = make_schedule("constant", lr=0.3, total_steps=50, steps_per_epoch=10, warmup_epochs=0.25)
    assert [lr(s) for s in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown schedule 'linear'; choose one of: cosine, step, constant"):
        make_schedule("linear", lr=0.1, total_steps=10, steps_per_epoch=5)
    assert SCHEDULES == ("cosine", "step", "constant")


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="total_steps=0 must be >= 1.*decay_epochs=0 must be > 0"):
        make_schedule("step", lr=0.1, total_steps=0, steps_per_epoch=5, decay_epochs=0)
    lr = make_schedule("constant", lr=0.1, total_steps=10, steps_per_epoch=5)
    with pytest.raises(ValueError, match="0-based global step, got -1"):
        lr(-1)
