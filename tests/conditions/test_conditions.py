"""Motivation conditions: scripted signals give exact decisions; state survives a JSON round trip."""

import json
import random

import pytest

from fastmotive.conditions import (CONDITIONS, Always, EmaStreak, GradNormRise, LossStreak, Never,
                                   RandomActivation, RandomMatched, Signal, ValLossStreak, parse_condition)


def run(condition, epochs: list[list[dict]], first_epoch: int = 0) -> list[list[bool]]:
    """Drive `condition` as the trainer does; per epoch, whether the motivated model trained each batch."""
    trained = []
    for epoch, batches in enumerate(epochs, start=first_epoch):
        motivated = condition.start_epoch(epoch, len(batches))
        row = []
        for batch, values in enumerate(batches):
            row.append(motivated)
            motivated = condition.update(Signal(epoch=epoch, batch=batch, batches_per_epoch=len(batches), **values))
        trained.append(row)
    return trained


def decisions(condition, epoch: int, values: list[dict]) -> list[bool]:
    """The update() results for one epoch of signals."""
    return [condition.update(Signal(epoch=epoch, batch=b, batches_per_epoch=len(values), **v))
            for b, v in enumerate(values)]


def losses(*xs: float) -> list[dict]:
    return [{"loss": x} for x in xs]


def test_loss_streak_carries_streak_and_prev_loss_across_epochs():
    c = LossStreak(k=2)
    # streak: 1 (first loss < inf), 2, 0, 1
    assert decisions(c, 0, losses(3.0, 2.9, 2.95, 2.8)) == [False, True, False, False]
    assert not c.start_epoch(1, 4)  # every epoch starts on the base model
    # 2.7 < 2.8 carried over: streak 2 at once; then 3, 0 (equal is no fall), 1
    assert decisions(c, 1, losses(2.7, 2.6, 2.6, 2.5)) == [True, True, False, False]
    assert (c.streak, c.prev_loss) == (1, 2.5)


def test_loss_streak_k1_fires_on_the_first_batch():
    c = LossStreak(k=1)
    assert decisions(c, 0, losses(5.0, 6.0, 4.0)) == [True, False, True]


def test_ema_streak_exact():
    c = EmaStreak(k=1, alpha=0.5, min_drop=0.1)
    # ema 1.0 (first: no fall); 0.75 (fell 0.25 > 0.1 * 1.0); 0.625 (0.125 > 0.075); 0.8125 (rose)
    assert decisions(c, 0, losses(1.0, 0.5, 0.5, 1.0)) == [False, True, True, False]
    assert c.ema == 0.8125
    c = EmaStreak(k=2, alpha=0.5, min_drop=0.2)
    # ema 1.0; 0.75 (0.25 > 0.2: streak 1); 0.625 (0.125 <= 0.15: streak 0); 0.3125 (0.3125 > 0.125: 1)
    assert decisions(c, 0, losses(1.0, 0.5, 0.5, 0.0)) == [False, False, False, False]
    assert c.streak == 1


def test_ema_streak_defaults_need_a_loss_10_percent_below_the_average():
    c = EmaStreak(k=1)
    assert (c.alpha, c.min_drop) == (0.02, 0.002)
    # ema_prev - ema = 0.02 * (ema_prev - loss) > 0.002 * ema_prev  <=>  loss < 0.9 * ema_prev
    assert decisions(c, 0, losses(1.0, 0.91, 0.89)) == [False, False, True]


def test_val_loss_streak_uses_val_loss():
    c = ValLossStreak(k=2)
    assert c.needs == frozenset({"val_loss"})
    values = [{"loss": 1.0, "val_loss": v} for v in (2.0, 1.5, 1.7, 1.6, 1.5)]
    assert decisions(c, 0, values) == [False, True, False, False, True]
    with pytest.raises(ValueError, match="ValLossStreak needs signal.val_loss"):
        c.update(Signal(loss=1.0, epoch=0, batch=5, batches_per_epoch=6))


def test_grad_norm_rise():
    c = GradNormRise(k=2)
    assert c.needs == frozenset({"grad_norm"})
    values = [{"loss": 1.0, "grad_norm": g} for g in (1.0, 2.0, 3.0, 2.0, 5.0, 5.0, 6.0, 7.0)]
    # streak: 1 (> -inf), 2, 3, 0, 1, 0 (equal is no rise), 1, 2
    assert decisions(c, 0, values) == [False, True, True, False, False, False, False, True]
    with pytest.raises(ValueError, match="GradNormRise needs signal.grad_norm"):
        c.update(Signal(loss=1.0, epoch=0, batch=8, batches_per_epoch=9))


def test_never_and_always():
    epochs = [losses(3.0, 2.0, 1.0)] * 2
    assert run(Never(), epochs) == [[False] * 3] * 2
    assert run(Always(), epochs) == [[True] * 3] * 2
    assert Never().needs == Always().needs == frozenset()


def test_random_activation_is_reproducible_by_seed():
    epochs = [losses(*[1.0] * 50)] * 4
    a, b, c = run(RandomActivation(0.3, seed=7), epochs), run(RandomActivation(0.3, seed=7), epochs), \
        run(RandomActivation(0.3, seed=8), epochs)
    assert a == b and a != c
    assert all(not row[0] for row in a)  # each epoch starts on the base model
    # draw after batch b decides batch b + 1: the motivated batches follow the seeded stream
    rng = random.Random(7)
    draws = [rng.random() < 0.3 for _ in range(200)]
    assert [row[1:] for row in a] == [draws[e * 50:e * 50 + 49] for e in range(4)]
    assert run(RandomActivation(0.0), epochs) == [[False] * 50] * 4
    assert all(row[1:] == [True] * 49 for row in run(RandomActivation(1.0), epochs))


@pytest.mark.parametrize("per_epoch", [0, 1, 3, 10])
def test_random_matched_runs_exactly_per_epoch_batches(per_epoch):
    c = RandomMatched(per_epoch, seed=3)
    trained = run(c, [losses(*[1.0] * 10)] * 20)
    assert all(sum(row) == per_epoch for row in trained)
    if 0 < per_epoch < 10:
        assert any(row[0] for row in trained) and len({tuple(row) for row in trained}) > 1
    assert trained == run(RandomMatched(per_epoch, seed=3), [losses(*[1.0] * 10)] * 20)


def test_random_matched_checks_its_input():
    with pytest.raises(ValueError, match=r"RandomMatched\(per_epoch=5\) needs at least 5 batches per epoch, "
                                         r"the epoch has 4"):
        RandomMatched(5).start_epoch(0, 4)
    c = RandomMatched(2)
    c.start_epoch(0, 4)
    with pytest.raises(ValueError, match="drew batches for epoch 0, got a signal of epoch 1"):
        c.update(Signal(loss=1.0, epoch=1, batch=0, batches_per_epoch=4))


SPECS = ["streak:2", "ema:2", "valloss:2", "gradnorm:2", "random:0.4", "matched:3", "never", "always"]


def scripted(n_epochs: int, n_batches: int) -> list[list[dict]]:
    rng = random.Random(0)
    return [[{"loss": rng.uniform(0.5, 2.0), "val_loss": rng.uniform(0.5, 2.0), "grad_norm": rng.uniform(0, 3)}
             for _ in range(n_batches)] for _ in range(n_epochs)]


@pytest.mark.parametrize("spec", SPECS)
def test_state_round_trip_mid_epoch_continues_identically(spec):
    epochs = scripted(3, 12)
    whole = run(parse_condition(spec, seed=5), epochs)
    # stop in the middle of epoch 1, save to JSON, restore into a fresh condition and carry on
    first = parse_condition(spec, seed=5)
    trained = run(first, epochs[:1])
    motivated = first.start_epoch(1, 12)
    row = []
    for batch, values in enumerate(epochs[1][:5]):
        row.append(motivated)
        motivated = first.update(Signal(epoch=1, batch=batch, batches_per_epoch=12, **values))
    state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
    resumed = parse_condition(spec, seed=99)  # the seed must come from the state, not the constructor
    resumed.load_state_dict(state)
    for batch, values in enumerate(epochs[1][5:], start=5):
        row.append(motivated)
        motivated = resumed.update(Signal(epoch=1, batch=batch, batches_per_epoch=12, **values))
    trained.append(row)
    trained += run(resumed, epochs[2:], first_epoch=2)
    assert trained == whole
    if spec not in ("never", "always"):
        assert any(any(r) for r in whole) and not all(all(r) for r in whole), "script exercises both models"


def test_loading_another_conditions_state_fails():
    with pytest.raises(ValueError, match="state is for 'streak', this condition is 'ema'"):
        EmaStreak(2).load_state_dict(LossStreak(2).state_dict())


def test_parse_condition_builds_each_kind():
    assert parse_condition("streak:3") == LossStreak(3)
    assert parse_condition("ema:2") == EmaStreak(2)
    assert parse_condition("valloss:4") == ValLossStreak(4)
    assert parse_condition("gradnorm:2") == GradNormRise(2)
    assert isinstance(parse_condition("never"), Never) and isinstance(parse_condition("always"), Always)
    r = parse_condition("random:0.1", seed=4)
    assert (type(r), r.p, r.seed) == (RandomActivation, 0.1, 4)
    m = parse_condition("matched:20", seed=4)
    assert (type(m), m.per_epoch, m.seed) == (RandomMatched, 20, 4)
    assert set(CONDITIONS) == {"streak", "ema", "valloss", "gradnorm", "random", "matched", "never", "always"}


@pytest.mark.parametrize("spec", ["streak", "streak:0", "streak:x", "ema:1.5", "random:1.5", "random:x",
                                  "matched:-1", "loss:2", "never:1", ""])
def test_bad_spec_names_the_spec_and_the_syntax(spec):
    with pytest.raises(ValueError, match=f"bad condition spec '{spec}'.*streak:K .* never \\| always"):
        parse_condition(spec)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="LossStreak k must be an integer >= 1, got 0"):
        LossStreak(0)
    with pytest.raises(ValueError, match="RandomActivation p must be in"):
        RandomActivation(-0.1)
    with pytest.raises(ValueError, match="EmaStreak alpha"):
        EmaStreak(2, alpha=0.0)
