"""Multi-process training through the CLI (`fastmotive train --nproc 2`, gloo, one thread per process): the
decisions and weights of two processes against one process over the same global batches, for a pair without
BatchNorm (ViT), the same-weights check every step, and a resume on another number of processes."""
import csv

import pytest
import torch

from fastmotive.cli.main import main

pytestmark = pytest.mark.slow   # each test starts two processes that import torch and timm

VIT = ["--arch", "vit_tiny_patch16_224:vit_small_patch16_224", "--img-size", "16", "--epochs", "2",
       "--epoch-batches", "4", "--val-batches", "2", "--condition", "streak:1", "--no-progress", "--opt", "sgd",
       "--lr", "0.05", "--warmup-epochs", "0"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # two processes on two cores


def steps(run) -> list[dict]:
    with open(run / "steps.csv") as f:
        return list(csv.DictReader(f))


def arena(run) -> torch.Tensor:
    return torch.load(run / "last.pt", weights_only=True)["arena"]


def test_two_processes_decide_and_train_as_one_over_the_same_global_batches(tmp_path):
    assert main(["train", *VIT, "-b", "8", "--output", str(tmp_path), "--experiment", "one"]) == 0
    assert main(["train", *VIT, "-b", "4", "--nproc", "2", "--check-sync", "1", "--output", str(tmp_path),
                 "--experiment", "two"]) == 0
    one, two = steps(tmp_path / "one"), steps(tmp_path / "two")
    assert [s["active"] for s in two] == [s["active"] for s in one]
    assert "motivated" in {s["active"] for s in one}
    assert [s["images"] for s in two] == [s["images"] for s in one] == ["8"] * 8
    for a, b in zip(one, two):
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4, abs=1e-5)
    torch.testing.assert_close(arena(tmp_path / "two")[:-1], arena(tmp_path / "one")[:-1], rtol=1e-4, atol=1e-5)


def test_resume_on_another_process_count_keeps_the_global_batch(tmp_path):
    assert main(["train", *VIT, "-b", "4", "--nproc", "2", "--max-steps", "3", "--output", str(tmp_path),
                 "--experiment", "run"]) == 0
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0   # one process, -b 8
    assert main(["train", *VIT, "-b", "8", "--output", str(tmp_path), "--experiment", "whole"]) == 0
    resumed, whole = steps(tmp_path / "run"), steps(tmp_path / "whole")
    assert [s["active"] for s in resumed] == [s["active"] for s in whole]
    assert [s["images"] for s in resumed] == ["8"] * 8
    for a, b in zip(whole, resumed):
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4, abs=1e-5)


def test_a_global_batch_that_does_not_split_is_refused(tmp_path, capfd):
    assert main(["train", *VIT, "-b", "3", "--max-steps", "1", "--output", str(tmp_path), "--experiment", "odd"]) == 0
    assert main(["train", "--resume", str(tmp_path / "odd"), "--nproc", "2"]) == 2
    assert "global batch of 3 images does not split over 2 processes" in capfd.readouterr().err
