"""What an evaluation costs and ships (issue 19): which models are calibrated (`stale_members`), the calibration
sample preprocessed as validation is, --eval-interval, raw figures after the last epoch only, the best model of
each member, and training throughput apart from evaluation."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import fastmotive as fm
from fastmotive.data import build_loaders, read_dataset
from fastmotive.data.build import sample_split
from fastmotive.run.directory import RunDir
from fastmotive.training.calibration import batchnorm_layers
from fastmotive.training.evaluation import CalibrationBatches, evaluate, stale_members

pytestmark = pytest.mark.usefixtures("one_thread")


def batches(n, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def pair(names=("resnet20", "resnet32")):
    torch.manual_seed(0)
    if len(names) == 1:
        return fm.MotivatedPair.from_arch(names[0], num_classes=10)
    return fm.MotivatedPair.from_names(*names, num_classes=10)


def test_stale_members_follow_the_momentum_window():
    p = pair()
    for bn in batchnorm_layers(p.base):
        bn.momentum = 0.5   # (1 - 0.5)^n < 1 % from n = 7 on
    assert math.log(0.01) / math.log(0.5) == pytest.approx(6.64, abs=0.01)
    assert stale_members(p, None, "stale", "paper") == ("motivated",)          # the motivated model never trained
    assert stale_members(p, 0, "stale", "paper") == ("base", "motivated")
    assert stale_members(p, 6, "stale", "paper") == ("base", "motivated")
    assert stale_members(p, 7, "stale", "paper") == ("motivated",)
    assert stale_members(p, 7, "all", "paper") == ("base", "motivated")
    assert stale_members(p, 0, "stale", "identity") == ()  # the copied statistics fit the grown model
    assert stale_members(p, 0, "all", "identity") == ("base", "motivated")
    p.keep_buffers = True                                     # the base's statistics never leave it
    assert stale_members(p, 0, "stale", "paper") == ("motivated",)


def test_a_single_model_keeps_its_own_statistics():
    single = pair(("resnet20",))
    assert stale_members(single, 0, "stale", "paper") == ()
    assert stale_members(single, 0, "all", "paper") == ("base",)
    trainer = fm.Trainer(single, optimizer="adamw", lr=1e-2, epochs=2, bn_calibrate=32, progress=False)
    row = trainer.fit(batches(3, 1), batches(2, 2)).epochs[-1]
    assert row["base_bn_calibrated"] == 0 and row["bn_calibration_images"] == 0
    assert row["base_top1"] == row["base_top1_raw"] and row["base_eval_loss"] == row["base_eval_loss_raw"]


def test_the_calibration_sample_is_preprocessed_as_validation():
    train, _, _ = build_loaders("digits", batch_size=32, seed=3, bn_calibrate=50)
    sample = train.calibration_sample
    images = torch.cat([x for x, _ in CalibrationBatches(train)])
    labels = torch.cat([y for _, y in CalibrationBatches(train)])
    raw = read_dataset("digits").train
    chosen = sample_split(raw, 50, seed=3)
    mean, std = torch.tensor(train.mean).view(1, 3, 1, 1), torch.tensor(train.std).view(1, 3, 1, 1)
    expected = (torch.from_numpy(chosen.images).float().expand(-1, 3, -1, -1) / 255 - mean) / std
    assert len(images) == 50 and len(set(chosen.labels.tolist())) > 5   # a random sample, not the first class
    torch.testing.assert_close(images, expected)                        # no crop shift, no flip
    assert torch.equal(labels, torch.from_numpy(chosen.labels))
    assert torch.equal(images, torch.cat([x for x, _ in sample.epoch_batches(0)]))   # the same at every evaluation
    assert not hasattr(build_loaders("digits", batch_size=32)[0], "calibration_sample")   # bn_calibrate 0: none
    assert np.array_equal(sample_split(raw, 50, seed=3).labels, chosen.labels)


def test_eval_interval_and_raw_figures_after_the_last_epoch(tmp_path):
    trainer = fm.Trainer(pair(), optimizer="adamw", lr=1e-2, condition=fm.LossStreak(k=1), epochs=3,
                         eval_interval=2, bn_calibrate=32, growth_init="paper", progress=False, output=tmp_path)
    rows = trainer.fit(batches(4, 1), batches(2, 2)).epochs
    assert [r["base_top1"] is not None for r in rows] == [False, True, True]
    assert [r["base_top1_raw"] is not None for r in rows] == [False, False, True]
    assert rows[1]["motivated_bn_calibrated"] == 1 and rows[1]["eval_s"] > 0
    with open(tmp_path / "summary.csv") as f:
        header, *lines = f.read().splitlines()
    assert "base_top1_raw" in header and len(lines) == 3   # one header whichever epochs were evaluated
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["base_top1"] == rows[-1]["base_top1"] and metrics["base_top1_raw"] == rows[-1]["base_top1_raw"]
    state = trainer.state
    assert metrics["train_images_per_sec"] == pytest.approx(state.images / state.train_s)
    assert metrics["eval_s"] == pytest.approx(sum(r["eval_s"] or 0 for r in rows))
    assert 0 < metrics["train_s"] + metrics["data_s"] + metrics["eval_s"] < metrics["wall_s"]


def test_the_best_model_of_each_member_is_kept_as_evaluated(tmp_path):
    p = pair()
    trainer = fm.Trainer(p, optimizer="adamw", lr=1e-2, condition=fm.LossStreak(k=1), epochs=3, bn_calibrate=32,
                         growth_init="paper", progress=False, output=tmp_path)
    val = batches(2, 2)
    rows = trainer.fit(batches(4, 1), val).epochs
    run = RunDir(tmp_path)
    for which in p.members:
        best = run.read_best(which)
        tops = [r[f"{which}_top1"] for r in rows]
        assert best["top1"] == max(tops) and best["epoch"] == tops.index(max(tops))
        reference = fm.MotivatedPair.from_names("resnet20", "resnet32", num_classes=10).model(which)
        reference.load_state_dict(load_file(run.best_path(which)))
        _, top1, top5 = evaluate(reference, val)
        assert (top1, top5) == (best["top1"], best["top5"])   # the statistics it was evaluated with


def test_auto_calibrates_an_image_folder_from_validation_preprocessing(tmp_path):
    from fastmotive.config.train_config import TrainConfig
    from fastmotive.run.parts import open_data
    from fastmotive.testing import write_image_folder
    write_image_folder(tmp_path, classes=2, per_class=6, size=(20, 20))
    config = TrainConfig(dataset="folder", data_dir=str(tmp_path), img_size=16, batch_size=4, bn_calibrate=5,
                         workers=0, loader="torch")
    train, _, _ = open_data(config, torch.device("cpu"))
    first, second = (torch.cat([x for x, _ in CalibrationBatches(train)]) for _ in range(2))
    assert CalibrationBatches(train).preprocessing == "validation" and len(first) == 5
    assert torch.equal(first, second)
    train, _, _ = open_data(TrainConfig(**{**config.__dict__, "bn_calibrate_from": "train"}), torch.device("cpu"))
    assert CalibrationBatches(train).preprocessing == "training augmentation"


def test_export_best_through_the_cli(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "fastmotive", *map(str, args)], capture_output=True, text=True,
                              timeout=600, check=False)
    small = ["--arch", "resnet20:resnet32", "-b", "32", "--no-progress", "--epoch-batches", "3", "--val-batches", "1",
             "--output", tmp_path]
    done = cli("train", *small, "--experiment", "early", "--max-steps", "2")
    assert done.returncode == 0, done.stderr
    refused = cli("export", tmp_path / "early", "--best")
    assert refused.returncode == 2 and "best_base.safetensors does not exist" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = cli("train", *small, "--experiment", "whole", "--epochs", "2")
    assert done.returncode == 0, done.stderr
    assert cli("export", tmp_path / "whole", "--best").returncode == 0
    config = json.loads((tmp_path / "whole" / "export" / "motivated" / "config.json").read_text())
    assert config["fastmotive"]["bn_calibration"]["best"]["motivated"] == RunDir(tmp_path / "whole").read_best(
        "motivated")


def test_bn_calibrate_from_chooses_the_sample():
    from fastmotive.config.train_config import TrainConfig
    from fastmotive.run.parts import open_data
    augmented, _, _ = open_data(TrainConfig(bn_calibrate=40), torch.device("cpu"))   # auto: arrays read training
    assert CalibrationBatches(augmented).preprocessing == "training augmentation"
    plain, _, _ = open_data(TrainConfig(bn_calibrate=40, bn_calibrate_from="val"), torch.device("cpu"))
    assert CalibrationBatches(plain).preprocessing == "validation"
    assert sum(len(y) for _, y in CalibrationBatches(plain)) == 40


def test_the_epoch_line_reads_like_timms():
    from fastmotive.training.progress import epoch_line
    row = {"epoch": 3, "train_loss": 0.5, "lr": 1e-3, "train_images_per_sec": 120.0, "data_s": 0.25,
           "motivated_fraction": 0.2, "switches": 4, "base_top1": 90.0, "base_top5": 99.0, "base_eval_loss": 0.3,
           "motivated_top1": 91.0, "motivated_top5": 99.5, "motivated_eval_loss": 0.28, "eval_s": 1.5,
           "calibration_s": 0.4, "bn_calibration_images": 100}
    line = epoch_line(row)
    assert "120 img/s  data 0.2s" in line and "eval 1.5s (calibration 0.4s)" in line
    assert "motivated top1  91.00" in line and "switches 4" in line
    skipped = {**row, **{k: None for k in row if k.startswith(("base_", "motivated_t", "motivated_e"))},
               "eval_s": None, "bn_calibration_images": None}
    assert "top1" not in epoch_line(skipped) and "eval" not in epoch_line(skipped)   # --eval-interval
    own = epoch_line({**row, "bn_calibration_images": 0})
    assert "calibration" not in own                                                    # nothing calibrated
    single = {k: v for k, v in row.items() if not k.startswith("motivated")}
    assert "motivated" not in epoch_line(single) and "top1  90.00" in epoch_line(single)
