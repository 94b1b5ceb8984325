"""The command line end to end on real data (scikit-learn digits): train, kill, resume, export, errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fastmotive as fm
from fastmotive.run.directory import RunDir
from fastmotive.run.export import load_exported

FAST = ["--arch", "resnet20:resnet32", "-b", "64", "--no-progress", "--opt", "sgd", "--lr", "0.05",
        "--warmup-epochs", "0"]


def fastmotive(*args, check=True, **kwargs):
    proc = subprocess.run([sys.executable, "-m", "fastmotive.cli.main", *map(str, args)], capture_output=True, text=True, check=False,
                          timeout=600, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"fastmotive {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def arena(run: Path) -> torch.Tensor:
    return torch.load(run / "last.pt", weights_only=True)["arena"]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    common = [*FAST, "--epochs", "2", "--checkpoint-every", "5", "--output", tmp_path]
    fastmotive("train", *common, "--experiment", "full")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fastmotive.cli.main", "train", *map(str, common),
                             "--experiment", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:   # kill in the middle of epoch 1 (22 batches per epoch), after step 30's checkpoint
        steps = killed / "steps.csv"
        if steps.exists() and len(steps.read_text().splitlines()) > 32:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(killed / "last.pt", weights_only=True)
    assert state["position"][0] == 1 and 0 < state["position"][1] < 22, state["position"]
    fastmotive("train", "--resume", killed, "--no-progress")
    assert torch.equal(arena(killed), arena(tmp_path / "full"))
    full_steps = (tmp_path / "full" / "steps.csv").read_text()
    assert (killed / "steps.csv").read_text() == full_steps
    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics["steps"] == 44


def test_resume_rejects_another_arch_and_keeps_the_checkpoint(tmp_path):
    fastmotive("train", *FAST, "--max-steps", "2", "--output", tmp_path, "--experiment", "r")
    before = (tmp_path / "r" / "last.pt").read_bytes()
    proc = fastmotive("train", "--resume", tmp_path / "r", "--arch", "resnet20:resnet44", check=False)
    assert proc.returncode != 0 and "--arch" in proc.stderr and "resnet20:resnet32" in proc.stderr
    assert (tmp_path / "r" / "last.pt").read_bytes() == before


def test_bad_arch_lists_families_and_syntax(tmp_path):
    # (a bare member name such as efficientnet_b0 is a valid single-model run)
    for arch in ("efficientnet_b0:", "efficientnet_b9"):
        proc = fastmotive("train", "--arch", arch, "--output", tmp_path, check=False)
        assert proc.returncode == 2
        assert "BASE:MOTIVATED" in proc.stderr and "cifar_resnet" in proc.stderr and "vit" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_missing_dataset_names_the_path(tmp_path):
    proc = fastmotive("train", *FAST, "--dataset", "cifar10", "--data-dir", tmp_path / "nowhere",
                      "--output", tmp_path, check=False)
    assert proc.returncode != 0 and "nowhere" in proc.stderr


def _logits_of_run(run: Path, which: str, x: torch.Tensor) -> torch.Tensor:
    args = RunDir(run).read_args()
    pair = fm.MotivatedPair.from_arch(args["arch"], **args["model_kwargs"])
    pair.load_state_dict(torch.load(run / "last.pt", weights_only=True))
    pair.switch_to("base")   # a checkpoint inside an episode: the base is what the switch back gives
    model = pair.model(which).eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("arch", ["resnet20:resnet32", "efficientnet_b0:b1"])
def test_export_reproduces_the_trainers_logits(tmp_path, arch):
    fastmotive("train", *FAST, "--arch", arch, "--max-steps", "3", "--condition", "streak:1", "--output", tmp_path,
               "--experiment", "e")
    out = fastmotive("export", tmp_path / "e", "--bn-calibrate", "0").stdout   # the checkpoint's own statistics
    assert "base/model.safetensors" in out and "motivated/model.safetensors" in out
    x = torch.randn(4, 3, 32, 32)
    for which in ("base", "motivated"):
        model = load_exported(tmp_path / "e" / "export", which).eval()
        assert type(model).__module__.startswith("timm" if arch.startswith("eff") else "fastmotive")
        with torch.no_grad():
            assert torch.equal(model(x), _logits_of_run(tmp_path / "e", which, x))


def test_config_file_sets_defaults_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nmax_steps: 2\nlr: 0.01\narch: resnet20:resnet32\nno_progress: true\n")
    fastmotive("train", "-c", config, "--lr", "0.02", "--output", tmp_path, "--experiment", "c")
    import yaml
    args = yaml.safe_load((tmp_path / "c" / "args.yaml").read_text())
    assert args["lr"] == 0.02 and args["max_steps"] == 2 and args["epochs"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rat: 3\n")
    proc = fastmotive("train", "-c", bad, "--output", tmp_path, check=False)
    assert proc.returncode != 0 and "learning_rat" in proc.stderr


def test_map_command_prints_the_plan():
    out = fastmotive("map", "resnet18:34").stdout
    assert "runs" in out and "last-to-last" in out


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_checkpoint_and_exit_cleanly(tmp_path, sig, status):
    proc = subprocess.Popen([sys.executable, "-m", "fastmotive.cli.main", "train", *map(str, FAST), "--epochs", "3",
                             "--output", tmp_path, "--experiment", "i"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    steps = tmp_path / "i" / "steps.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (steps.exists() and len(steps.read_text().splitlines()) > 5):
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == status, err   # 128 + the signal, after the checkpoint
    assert "stopped by" in out and "--resume" in out and "done" not in out
    assert not (tmp_path / "i" / ".lock").exists()   # released: the run resumes at once
    state = torch.load(tmp_path / "i" / "last.pt", weights_only=True)
    assert state["step"] == len((tmp_path / "i" / "steps.csv").read_text().splitlines()) - 1 < 66


def test_eval_of_a_single_model_run_says_what_it_evaluated(tmp_path):
    fastmotive("train", "--arch", "resnet20", "--epochs", "1", "--epoch-batches", "2", "--val-batches", "1",
               "-b", "16", "--no-progress", "--bn-calibrate", "16", "--output", tmp_path, "--experiment", "s")
    budget = fastmotive("eval", tmp_path / "s")
    assert "the first 16 of 360" in budget.stdout and "motivated" not in budget.stdout, budget.stdout
    whole = fastmotive("eval", tmp_path / "s", "--val-batches", "0")
    assert "the whole split" in whole.stdout
    saved = json.loads((tmp_path / "s" / "eval.json").read_text())
    assert saved["val_images"] == saved["val_size"] == 360 and saved["models"] == ["base"]
