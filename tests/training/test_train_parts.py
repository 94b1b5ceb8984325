"""The trainer's parts: its keywords, the step seam, running totals (O(1) per step), checkpoints that hold
what resume needs and no step history, the history rebuilt from the logs, log lines, the bar and Ctrl-C."""
import io
import json
import math
import random
import shutil
import signal

import pytest
import torch

import fastmotive as fm
from fastmotive.config import settings
from fastmotive.flops import FlopCount
from fastmotive.training.progress import LogLines, ProgressBar, open_progress
from fastmotive.training.state import CHECKPOINT_KEYS, TrainState
from fastmotive.training.trainer import History, StepResult, Trainer
from tests.helpers import batches, make_pair


class Constant:
    """A step function: no model work, loss 1/(step+1) (so LossStreak switches); counts its calls."""

    def __init__(self, on_call=None):
        self.calls, self.on_call = 0, on_call

    def __call__(self, model, images, labels, lr, step):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(step)
        return StepResult(1.0 / (step + 1))


class CountingScans(list):
    """A step list that counts every pass over its items (iteration, slices, reversed, index, count)."""

    scans = 0

    def __iter__(self):
        CountingScans.scans += 1
        return super().__iter__()

    def __reversed__(self):
        CountingScans.scans += 1
        return super().__reversed__()

    def __getitem__(self, key):
        if isinstance(key, slice):
            CountingScans.scans += 1
        return super().__getitem__(key)

    def index(self, *args):
        CountingScans.scans += 1
        return super().index(*args)

    def count(self, value):
        CountingScans.scans += 1
        return super().count(value)


# -- keywords ---------------------------------------------------------------------------------------------

def test_defaults_are_the_settings_and_aliases_map_to_them():
    assert Trainer(make_pair()).config == settings.TrainConfig()
    trainer = Trainer(make_pair(), optimizer="sgd", schedule="step", progress=False, lr=0.1)
    c = trainer.config
    assert (c.opt, c.sched, c.no_progress, c.lr) == ("sgd", "step", True, 0.1)
    base = settings.replace(settings.TrainConfig(), epochs=3, opt="lamb")
    assert Trainer(make_pair(), base, lr=0.5).config == settings.replace(base, lr=0.5)


def test_the_readme_call_works():
    trainer = fm.Trainer(make_pair(), optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                         condition=fm.LossStreak(k=2), schedule="cosine", warmup_epochs=0, epochs=2, seed=0)
    history = trainer.fit(batches(3), batches(1, seed=4))
    assert set(history.steps[0]) == {"step", "epoch", "batch", "active", "loss", "lr", "images", "switched"}
    assert len(history.epochs) == 2 and {"train_loss", "base_top1", "motivated_top5", "motivated_fraction",
                                         "switches"} <= set(history.epochs[-1])


def test_unknown_or_doubled_keywords_raise_type_error():
    with pytest.raises(TypeError, match="'learning_rate'"):
        Trainer(make_pair(), learning_rate=0.1)
    with pytest.raises(TypeError, match="'opt'"):
        Trainer(make_pair(), optimizer="sgd", opt="adamw")
    with pytest.raises(fm.ConfigError, match="'rmsprops'"):
        Trainer(make_pair(), optimizer="rmsprops")


def test_condition_spec_from_the_config_and_object_override():
    assert isinstance(Trainer(make_pair(), condition="never").condition, fm.Never)
    assert isinstance(Trainer(make_pair(), settings.replace(settings.TrainConfig(), condition="always"),
                              condition=fm.Never()).condition, fm.Never)


def test_default_step_computes_the_grad_norm_only_when_the_condition_needs_it():
    data = batches(1)
    with_norm = Trainer(make_pair(), condition=fm.GradNormRise(k=1)).step_fn("base", *data[0], 1e-3, 0)
    without = Trainer(make_pair(), condition=fm.Never()).step_fn("base", *data[0], 1e-3, 0)
    assert with_norm.grad_norm > 0 and without.grad_norm is None
    assert math.isclose(with_norm.loss, without.loss, rel_tol=1e-6)


# -- O(1) per step ------------------------------------------------------------------------------------------

def test_per_step_bookkeeping_never_rescans_the_history(tmp_path, capsys):
    """A step's record, totals, steps.csv row, log line, epoch row and checkpoint never pass over the recorded
    steps: the list of steps is only appended to while the loop runs."""
    scans_at_each_step = []
    step_fn = Constant(on_call=lambda step: scans_at_each_step.append(CountingScans.scans))
    trainer = Trainer(make_pair(), condition=fm.LossStreak(k=1), epochs=3, output=tmp_path / "run",
                      checkpoint_every=4, progress=False, log_interval=1, step_fn=step_fn)
    trainer.history = History(steps=CountingScans())
    CountingScans.scans = 0
    history = trainer.fit(batches(5), batches(2, seed=3))
    assert len(history.steps) == 15 and scans_at_each_step == [0] * 15
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 15 + 3   # log_interval=1: one line per step, and one per epoch as it ends
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [["epoch", str(e)] for e in range(3)]


def test_running_totals_equal_sums_over_the_records():
    rng = random.Random(0)
    state, records = TrainState(), []
    for i in range(200):
        record = {"step": i, "epoch": 0, "batch": i, "active": rng.choice(["base", "motivated"]),
                  "loss": rng.random() * 3, "lr": rng.random(), "images": rng.randint(1, 64),
                  "switched": rng.random() < 0.2}
        state.record(record)
        records.append(record)
    row = state.end_epoch(wall_s=1.5)
    assert row["train_loss"] == sum(r["loss"] for r in records) / len(records)    # same order: identical
    assert row["motivated_fraction"] == sum(r["active"] == "motivated" for r in records) / len(records)
    assert row["switches"] == state.switches == sum(r["switched"] for r in records)
    assert row["lr"] == records[-1]["lr"] and state.images == sum(r["images"] for r in records)
    assert state.position == (1, 0) and state.epoch_steps == 0 and math.isnan(state.epoch_lr)
    assert TrainState.from_state_dict(state.state_dict()) == state


# -- checkpoints and resume ---------------------------------------------------------------------------------

def test_checkpoint_holds_what_resume_needs_and_no_history(tmp_path):
    sizes = {}
    for steps in (4, 40):
        run = tmp_path / str(steps)
        Trainer(make_pair(), epochs=steps // 4, output=run, step_fn=Constant()).fit(batches(4))
        state = torch.load(run / "last.pt", weights_only=True)
        assert set(state) == {"arena", "grad_row", "active", "weights_map", *CHECKPOINT_KEYS}
        assert state["step"] == steps and state["totals"]["step"] == steps
        sizes[steps] = (run / "last.pt").stat().st_size
    assert abs(sizes[40] - sizes[4]) < 200, sizes   # ten times the steps, the same checkpoint


TIMES = ("wall_s", "train_images_per_sec", "train_s", "data_s", "eval_s", "calibration_s")   # measured


def _without_wall(rows):
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def test_resumed_history_equals_uninterrupted_with_types(tmp_path):
    data, val = batches(5), batches(2, seed=7)
    kwargs = dict(optimizer="adamw", lr=1e-2, condition="streak:1", epochs=3)
    full = Trainer(make_pair(), **kwargs).fit(data, val)
    Trainer(make_pair(), **kwargs, output=tmp_path / "run", max_steps=8).fit(data, val)
    resumed = Trainer(make_pair(seed=5), **kwargs, output=tmp_path / "run").fit(data, val,
                                                                                 resume=tmp_path / "run")
    assert resumed.steps == full.steps
    assert [type(v) for v in resumed.steps[0].values()] == [int, int, int, str, float, float, int, bool]
    assert _without_wall(resumed.epochs) == _without_wall(full.epochs)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 15 and metrics["switches"] == sum(s["switched"] for s in full.steps)


def test_resume_from_an_earlier_checkpoint_drops_later_log_rows(tmp_path):
    run = tmp_path / "run"

    def keep_step_3_checkpoint(step):
        if step == 3:   # the checkpoint written after step 3's batch (checkpoint_every=3) is on disk
            shutil.copy(run / "last.pt", run / "early.pt")
    Trainer(make_pair(), epochs=2, output=run, checkpoint_every=3,
            step_fn=Constant(on_call=keep_step_3_checkpoint)).fit(batches(4))
    assert len((run / "steps.csv").read_text().splitlines()) == 9
    trainer = Trainer(make_pair(), epochs=2, output=run)
    trainer.load_checkpoint(run / "early.pt")
    assert trainer.step == 3 and trainer.state.position == (0, 3)
    assert [s["step"] for s in trainer.history.steps] == [0, 1, 2] and trainer.history.epochs == []
    assert len((run / "steps.csv").read_text().splitlines()) == 4 and not (run / "summary.csv").exists()


def test_resume_without_the_step_log_names_it(tmp_path):
    run = tmp_path / "run"
    Trainer(make_pair(), epochs=1, output=run, step_fn=Constant()).fit(batches(3))
    (run / "steps.csv").unlink()
    with pytest.raises(fm.CheckpointError, match="steps.csv is missing"):
        Trainer(make_pair(), epochs=2, step_fn=Constant()).fit(batches(3), resume=run)


def test_resume_refuses_another_optimizer(tmp_path):
    Trainer(make_pair(), optimizer="adamw", epochs=1, output=tmp_path / "run",
            step_fn=Constant()).fit(batches(2))
    with pytest.raises(fm.CheckpointError, match="optimizer 'adamw'.*--opt adamw"):
        Trainer(make_pair(), optimizer="sgd", epochs=2).fit(batches(2), resume=tmp_path / "run")


def test_divergence_messages_say_what_is_true(tmp_path):
    def nan_at_2(model, images, labels, lr, step):
        return StepResult(float("nan") if step == 2 else 1.0)
    with pytest.raises(fm.TrainingDivergedError, match="no checkpoint was written") as info:
        Trainer(make_pair(), epochs=1, step_fn=nan_at_2).fit(batches(4))
    assert "--amp" not in str(info.value)
    pair = make_pair()
    trainer = Trainer(pair, epochs=1, output=tmp_path / "run")
    with torch.no_grad():
        pair.base.fc.weight[0, 0] = float("nan")
    with pytest.raises(fm.TrainingDivergedError, match="no checkpoint of this run was written"):
        trainer.save_checkpoint()
    assert not (tmp_path / "run" / "last.pt").exists()


def test_flops_go_to_metrics(tmp_path):
    flops = {"base": FlopCount(100), "motivated": FlopCount(300)}
    Trainer(make_pair(), condition="always", epochs=1, output=tmp_path, flops=flops,
            step_fn=Constant()).fit(batches(3))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["base_flops"] == 100 and metrics["train_flops_per_image"] == 300


# -- progress and Ctrl-C -----------------------------------------------------------------------------------

def test_log_interval_prints_a_line_every_n_steps(capsys):
    Trainer(make_pair(), epochs=2, progress=False, log_interval=3, step_fn=Constant()).fit(batches(4))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step")]
    assert [line.split()[1] for line in lines] == ["3", "6"]   # besides them, one line per epoch
    assert "motivated" in lines[0] and "img/s" in lines[0]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_shows_on_a_terminal_only():
    assert isinstance(open_progress(bar=True, log_interval=5, total=4, done=0, stream=io.StringIO()),
                      LogLines)
    assert isinstance(open_progress(bar=False, log_interval=5, total=4, done=0, stream=_Terminal()), LogLines)
    bar = open_progress(bar=True, log_interval=5, total=4, done=0, stream=_Terminal())
    assert isinstance(bar, ProgressBar)
    totals = TrainState()
    step = {"step": 0, "epoch": 0, "batch": 0, "active": "motivated", "loss": 0.5, "lr": 0.1, "images": 8,
            "switched": False}
    totals.record(step)
    bar.update(step, totals)
    bar.close()
    assert "motivated 100.0%" in bar.progress.console.file.getvalue()


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, as in a terminal (a shell's background job starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_first_ctrl_c_stops_after_the_batch_and_checkpoints(tmp_path, python_sigint):
    def interrupt(step):
        if step == 2:
            signal.raise_signal(signal.SIGINT)
    trainer = Trainer(make_pair(), epochs=2, output=tmp_path / "run", step_fn=Constant(on_call=interrupt))
    history = trainer.fit(batches(5))
    assert trainer.stop_requested and len(history.steps) == 3
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["position"] == [0, 3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_ctrl_c_raises_keyboard_interrupt(python_sigint):
    def interrupt_twice(step):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        Trainer(make_pair(), epochs=1, step_fn=Constant(on_call=interrupt_twice)).fit(batches(3))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
