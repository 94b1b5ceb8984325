"""Run logs timm users can read: summary.csv in timm's column order that reads back as logged, single-model runs'
metrics and plot, and the optional TensorBoard and Weights & Biases sinks (fastmotive/training/loggers.py), read back from
the files they write."""
import csv
import json
import math
import struct
import sys
import time
from types import SimpleNamespace

import pytest

from fastmotive.errors import ConfigError
from fastmotive.run.directory import RunDir
from fastmotive.training.loggers import RunLoggers

PAIR_ROW = {"epoch": 0, "train_loss": 1.25, "lr": 0.05, "motivated_fraction": 0.25, "switches": 2, "wall_s": 3.5,
            "base_eval_loss": 0.9, "base_top1": 71.5, "base_top5": 97.0, "base_eval_loss_raw": 1.1,
            "base_top1_raw": 65.0, "base_top5_raw": 95.5, "bn_calibration_images": 128,
            "motivated_eval_loss": 1.3, "motivated_top1": 55.25, "motivated_top5": 90.0,
            "motivated_eval_loss_raw": 2.0, "motivated_top1_raw": 30.0, "motivated_top5_raw": 80.0}
SINGLE_ROW = {k: v for k, v in PAIR_ROW.items() if not k.startswith("motivated_") or k == "motivated_fraction"}


def steps(active: list[str]) -> list[dict]:
    return [{"step": i, "epoch": i // 2, "batch": i % 2, "active": a, "loss": 2.0 - 0.1 * i, "lr": 0.1 / (i + 1),
             "images": 4, "switched": i > 0 and a != active[i - 1]} for i, a in enumerate(active)]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_summary_starts_with_timms_columns_and_reads_back_as_logged(tmp_path):
    run = RunDir(tmp_path)
    second = dict(PAIR_ROW, epoch=1, train_loss=0.1 + 0.2, lr=1e-7 / 3, base_top1=80.0)   # awkward floats
    run.log_epoch(PAIR_ROW)
    run.log_epoch(second)
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:9] == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr", "motivated_eval_loss",
                          "motivated_top1", "motivated_top5"]
    assert set(header) == set(PAIR_ROW) | {"eval_loss", "eval_top1", "eval_top5"}   # every old name kept
    rows = read_rows(tmp_path / "summary.csv")
    assert [(r["eval_loss"], r["eval_top1"], r["eval_top5"]) for r in rows] == [("0.9", "71.5", "97.0"),
                                                                            ("0.9", "80.0", "97.0")]
    _, epochs = run.read_logs(steps=0, epochs=2)
    assert epochs == [PAIR_ROW, second]            # the eval_* copies dropped, every value bit for bit
    assert all(type(e["epoch"]) is int and type(e["switches"]) is int for e in epochs)


def test_rewrite_logs_keeps_the_order_and_the_rows(tmp_path):
    run = RunDir(tmp_path)
    history = SimpleNamespace(steps=steps(["base", "motivated", "base"]), epochs=[PAIR_ROW])
    for s in history.steps:
        run.log_step(s)
    run.log_epoch(PAIR_ROW)
    run.log_epoch(dict(PAIR_ROW, epoch=1))          # logged after the checkpoint: dropped by the resume
    run.rewrite_logs(history)
    assert run.read_logs(steps=3, epochs=1) == (history.steps, [PAIR_ROW])
    assert len(read_rows(tmp_path / "summary.csv")) == 1
    assert (tmp_path / "summary.csv").read_text().startswith("epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,")


def test_a_row_is_written_under_the_existing_header(tmp_path):
    """A summary.csv written in another column order (an older fastmotive) gets new rows under its own header."""
    old = ["epoch", "train_loss", "lr", "base_top1", "motivated_top1"]
    (tmp_path / "summary.csv").write_text(",".join(old) + "\n0,1.5,0.1,50.0,40.0\n")
    RunDir(tmp_path).log_epoch(dict(PAIR_ROW, epoch=1))
    rows = read_rows(tmp_path / "summary.csv")
    assert rows[1] == {"epoch": "1", "train_loss": "1.25", "lr": "0.05", "base_top1": "71.5", "motivated_top1": "55.25"}


def test_single_model_run_summary_metrics_and_plot(tmp_path):
    run = RunDir(tmp_path)
    run.log_epoch(SINGLE_ROW)
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr"]
    assert not any(h.startswith("motivated_") and h != "motivated_fraction" for h in header)
    assert run.read_logs(steps=0, epochs=1)[1] == [SINGLE_ROW]
    history = SimpleNamespace(steps=steps(["base"] * 4), epochs=[SINGLE_ROW, dict(SINGLE_ROW, epoch=1)])
    metrics = run.write_metrics(history, wall_s=1.0, images=16)
    assert metrics["base_top1"] == 71.5 and metrics["motivated_top1"] is None and metrics["motivated_fraction"] == 0
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_an_epoch_without_evaluation_has_no_eval_columns(tmp_path):
    row = {k: PAIR_ROW[k] for k in ("epoch", "train_loss", "lr", "motivated_fraction", "switches", "wall_s")}
    run = RunDir(tmp_path)
    run.log_epoch(row)
    assert (tmp_path / "summary.csv").read_text().splitlines()[0] == "epoch,train_loss,lr,motivated_fraction,switches,wall_s"
    assert run.read_logs(steps=0, epochs=1)[1] == [row]


# -- the sinks -------------------------------------------------------------------------------------------------

def test_both_sinks_off_write_nothing(tmp_path):
    loggers = RunLoggers.open(tmp_path / "run", {"lr": 0.1})
    assert not loggers.enabled
    for s in steps(["base", "motivated"]):
        loggers.step(s)
    loggers.epoch(PAIR_ROW)
    loggers.close()
    assert not (tmp_path / "run").exists()


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    record = steps(["base", "base", "motivated", "base"])
    loggers = RunLoggers.open(tmp_path, {"lr": 0.1}, tensorboard=True)
    for s in record:
        loggers.step(s)
    loggers.epoch(PAIR_ROW)
    loggers.epoch(dict(SINGLE_ROW, epoch=1))
    loggers.close()
    got = scalars(tmp_path / "tensorboard")
    assert got["train/loss_base"] == [(0, pytest.approx(2.0)), (1, pytest.approx(1.9)), (3, pytest.approx(1.7))]
    assert got["train/loss_motivated"] == [(2, pytest.approx(1.8))]
    assert [v for _, v in got["train/active"]] == [0, 0, 1, 0]
    assert got["train/lr"][2] == (2, pytest.approx(0.1 / 3))
    assert got["eval/base_top1"] == [(0, 71.5), (1, 71.5)]
    assert got["eval/motivated_top1"] == [(0, 55.25)]      # epoch 1 is a single-model row
    assert got["eval/base_loss_raw"] == [(0, pytest.approx(1.1)), (1, pytest.approx(1.1))]
    assert got["epoch/motivated_fraction"][0] == (0, 0.25)


def test_tensorboard_resume_hides_the_replayed_steps(tmp_path):
    pytest.importorskip("tensorboard")
    first = RunLoggers.open(tmp_path, {}, tensorboard=True)
    for s in steps(["base"] * 4):
        first.step(s)
    first.close()
    second = RunLoggers.open(tmp_path, {}, tensorboard=True, resume_step=2)   # resumed from a checkpoint at step 2
    for s in steps(["base"] * 4)[2:]:
        second.step(dict(s, loss=s["loss"] + 10))
    second.close()
    assert [(step, round(v, 4)) for step, v in scalars(tmp_path / "tensorboard")["train/loss_base"]] == \
        [(0, 2.0), (1, 1.9), (2, 11.8), (3, 11.7)]


def test_missing_packages_name_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)                   # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fastmotive\[wandb\]'"):
        RunLoggers.open(tmp_path, {}, wandb=True)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        RunLoggers.open(tmp_path, {}, tensorboard=True)


def wandb_records(path):
    """The records of an offline run's .wandb file (a LevelDB-style log: 32 KiB blocks of checksummed chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7])[:2] == (b":W&B", 0xBEE1)
    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):   # block padding
            pos += left
            continue
        if pos + 7 + length > len(data):              # a record still being written
            return
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                            # a full record, or a record's last chunk
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_wandb_offline_run_holds_steps_epochs_and_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)                   # offline is the default
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = RunLoggers.open(tmp_path, {"lr": 0.05, "arch": "resnet20:resnet32"}, wandb=True)
    for s in steps(["base", "motivated", "base", "base"]):
        loggers.step(s)
    loggers.epoch(PAIR_ROW)
    loggers.close()
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    deadline = time.monotonic() + 60   # wandb's service may still be writing the file when finish() returns
    while "exit" not in [r.WhichOneof("record_type") for r in wandb_records(files[0])] and time.monotonic() < deadline:
        time.sleep(0.2)
    history, config = {}, {}   # history rows merged by step; config from the run record and any later update
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history.setdefault(row["_step"], {}).update(row)
        elif kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key: json.loads(item.value_json) for item in updates})
    assert config["lr"] == 0.05 and config["arch"] == "resnet20:resnet32"
    assert sorted(history) == [0, 1, 2, 3]
    assert history[1]["train/loss_motivated"] == pytest.approx(1.9) and history[1]["train/active"] == 1
    last = history[3]                                    # the epoch row joins the epoch's last step
    assert last["epoch"] == 0 and last["eval/base_top1"] == 71.5 and last["eval/motivated_top1"] == 55.25
    assert last["train/loss_base"] == pytest.approx(1.7) and not math.isnan(last["epoch/train_loss"])
