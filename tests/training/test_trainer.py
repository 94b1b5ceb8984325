"""Algorithm 1 in the trainer: switching semantics, optimizer parity, run directory, divergence."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import fastmotive as fm
from fastmotive.conditions import Always, LossStreak, Never
from fastmotive.training.trainer import Trainer, TrainingDivergedError
from tests.helpers import Net, Scripted, batches, make_pair


def test_loss_streak_drives_switches_exactly():
    pair = make_pair()
    losses = [1.0, 0.9, 0.8, 0.7, 0.75, 0.6,
              0.55, 0.5, 0.45, 0.6, 0.5, 0.4]
    trainer = Trainer(pair, condition=LossStreak(k=2), epochs=2, step_fn=Scripted(losses))
    # prev_loss starts at +inf, so batch 0 already counts as a fall: the streak reaches 2 at batch 1 and the
    # motivated model runs from batch 2; the rise at batch 4 sends batch 5 back to the base. Epoch 1 starts
    # on the base, but streak (1 after batch 5) and prev_loss carry over: batch 6 makes it 2.
    history = trainer.fit(batches(6))
    assert trainer.step_fn.ran == ["base", "base", "motivated", "motivated", "motivated", "base",
                           "base", "motivated", "motivated", "motivated", "base", "base"]
    assert [s["active"] for s in history.steps] == trainer.step_fn.ran
    # the streak reaches 2 again at batch 11, the epoch's last: that episode would be closed at once, so
    # the round trip is skipped
    assert [s["switched"] for s in history.steps] == [False, True, False, False, True, False,
                                                      True, False, False, True, False, False]
    assert pair.active == "base"


def test_epoch_end_closes_an_open_episode():
    pair = make_pair()
    trainer = Trainer(pair, condition=LossStreak(k=1), epochs=2,
                      step_fn=Scripted([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]))
    history = trainer.fit(batches(4))
    # k=1: the first batch of each epoch falls (from +inf, then from the last loss), so the motivated model
    # runs the rest of the epoch, and the epoch-end switch back follows the last batch
    assert trainer.step_fn.ran == ["base", "motivated", "motivated", "motivated", "base", "motivated",
                                   "motivated", "motivated"]
    assert [s["switched"] for s in history.steps] == [True, False, False, True, True, False, False, True]
    assert pair.active == "base"


def _plain_sgd_reference(model, data, lr, epochs):
    """A hand-written PyTorch loop: torch.optim.SGD, cosine lr per step, timm's decay grouping."""
    import timm.optim
    groups = timm.optim.param_groups_weight_decay(model, weight_decay=5e-4)
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, foreach=False)
    total = epochs * len(data)
    from fastmotive.training.schedules import make_schedule
    schedule = make_schedule("cosine", lr=lr, total_steps=total, steps_per_epoch=len(data))
    step = 0
    for _ in range(epochs):
        for x, y in data:
            for g in opt.param_groups:
                g["lr"] = schedule(step)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            step += 1
    return model


def test_never_trains_the_base_like_a_plain_loop():
    pair = make_pair()
    reference = copy.deepcopy(pair.base)
    data = batches(5)
    Trainer(pair, optimizer="momentum", lr=0.05, weight_decay=5e-4, warmup_epochs=0, condition=Never(),
            epochs=2).fit(data)
    _plain_sgd_reference(reference, data, 0.05, 2)
    for (name, got), want in zip(pair.base.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_always_trains_the_motivated_model_and_hands_the_base_its_slices():
    pair = make_pair()
    reference = copy.deepcopy(pair.motivated)
    with torch.no_grad():   # the motivated model starts from the base's weights in the mapped slices
        for e in pair.weights_map.entries:
            b = pair.base.state_dict()[e.base]
            reference.state_dict()[e.motivated][tuple(slice(0, n) for n in b.shape)].copy_(b)
    data = batches(5)
    history = Trainer(pair, optimizer="momentum", lr=0.05, weight_decay=5e-4, warmup_epochs=0, condition=Always(),
                      epochs=2, growth_init="paper").fit(data)   # Algorithm 1's copy alone, no growth init
    assert all(s["active"] == "motivated" for s in history.steps)
    _plain_sgd_reference(reference, data, 0.05, 2)
    for (name, got), want in zip(pair.motivated.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    for e in pair.weights_map.entries:   # the epoch-end switch gives the base exactly its slices
        b = pair.base.state_dict()[e.base]
        assert torch.equal(b, pair.motivated.state_dict()[e.motivated][tuple(slice(0, n) for n in b.shape)])


@pytest.mark.parametrize("opt", ["adamw", "rmsproptf", "lamb"])
def test_optimizer_state_rows_travel_with_the_switch(opt):
    pair = make_pair()
    trainer = Trainer(pair, optimizer=opt, lr=1e-3, condition=Always(), epochs=1)
    trainer.fit(batches(6))
    assert pair.segment("motivated").state[:1].abs().sum() > 0
    seg_b, seg_m = pair.segment("base"), pair.segment("motivated")
    rows = len(fm.optim.OPTIMIZERS[opt].state_rows)
    assert pair.state_rows_copied == rows
    # the epoch-end switch down hands the base the motivated model's state rows for its slices
    weight = next(s for s in seg_b.slots if s.name == "conv.weight")
    mweight = next(s for s in seg_m.slots if s.name == "conv.weight")
    for r in range(rows):
        b = seg_b.state[r, weight.offset: weight.offset + weight.numel].view(weight.shape)
        m = seg_m.state[r, mweight.offset: mweight.offset + mweight.numel].view(mweight.shape)
        assert torch.equal(b, m[: b.shape[0], : b.shape[1]])


def test_run_directory_and_metrics(tmp_path):
    pair = make_pair()
    val = batches(2, seed=7)
    trainer = Trainer(pair, optimizer="adamw", lr=1e-2, epochs=2, output=tmp_path / "run")
    history = trainer.fit(batches(5), val)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("base_top1", "motivated_top1", "motivated_fraction", "switches", "steps", "images_per_sec",
                "wall_s"):
        assert key in metrics
    assert metrics["steps"] == 10 == len(history.steps)
    assert metrics["switches"] == sum(s["switched"] for s in history.steps)
    assert len((run / "steps.csv").read_text().splitlines()) == 11
    assert len((run / "summary.csv").read_text().splitlines()) == 3
    assert (run / "plot.png").stat().st_size > 1000 and (run / "last.pt").is_file()
    assert 0 <= history.epochs[-1]["base_top1"] <= 100
    # evaluate() agrees with a hand computation
    x = torch.cat([b[0] for b in val])
    y = torch.cat([b[1] for b in val])
    pair.base.eval()
    with torch.no_grad():
        acc = (pair.base(x).argmax(1) == y).float().mean().item() * 100
    assert trainer.evaluate("base", val)[1] == pytest.approx(acc)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    pair = make_pair()
    trainer = Trainer(pair, epochs=3, output=tmp_path / "run",
                      step_fn=Scripted([1.0, 0.9, 0.8, 0.7, float("nan")]))
    with pytest.raises(TrainingDivergedError, match=r"step 4 .*on the base model"):
        trainer.fit(batches(4))
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["position"] == [1, 0]   # the epoch-0 checkpoint
    assert torch.isfinite(state["arena"]).all()


def test_save_refuses_non_finite_weights(tmp_path):
    pair = make_pair()
    trainer = Trainer(pair, epochs=1, output=tmp_path / "run")
    trainer.save_checkpoint()
    good = (tmp_path / "run" / "last.pt").read_bytes()
    with torch.no_grad():
        pair.base.fc.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match="not finite"):
        trainer.save_checkpoint()
    assert (tmp_path / "run" / "last.pt").read_bytes() == good


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    data = batches(5)
    full = Trainer(make_pair(), optimizer="adamw", lr=1e-2, condition=LossStreak(k=1), epochs=2)
    full.fit(data)
    first = Trainer(make_pair(), optimizer="adamw", lr=1e-2, condition=LossStreak(k=1), epochs=2,
                    output=tmp_path / "run", max_steps=7)
    first.fit(data)
    resumed = Trainer(make_pair(seed=5), optimizer="adamw", lr=1e-2, condition=LossStreak(k=1), epochs=2,
                      output=tmp_path / "run")
    history = resumed.fit(data, resume=tmp_path / "run")
    assert torch.equal(resumed.pair.arena.data[:-1], full.pair.arena.data[:-1])
    assert [s["loss"] for s in history.steps] == [s["loss"] for s in full.history.steps]
    assert len((tmp_path / "run" / "steps.csv").read_text().splitlines()) == 11


def test_resume_refuses_another_pair(tmp_path):
    Trainer(make_pair(), epochs=1, output=tmp_path / "run", max_steps=2).fit(batches(3))
    other = fm.MotivatedPair(Net(4), Net(8))
    with pytest.raises(fm.checkpoint.CheckpointError, match="another pair"):
        Trainer(other, epochs=1).fit(batches(3), resume=tmp_path / "run")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(fm.checkpoint.CheckpointError, match="corrupt"):
        Trainer(make_pair(), epochs=1).fit(batches(3), resume=tmp_path / "bad.pt")


def test_amp_and_channels_last_train():
    pair = make_pair()
    history = Trainer(pair, optimizer="adamw", lr=1e-3, epochs=1, amp=True,
                      channels_last=True).fit(batches(3))
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in history.steps)
    pair.arena.check_bound()


def test_step_schedule_flags_reach_the_lr():
    pair = make_pair()
    trainer = Trainer(pair, optimizer="sgd", lr=0.1, schedule="step", decay_epochs=1, decay_rate=0.5,
                      warmup_epochs=0, condition=Never(), epochs=3)
    history = trainer.fit(batches(2))
    assert [s["lr"] for s in history.steps] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
