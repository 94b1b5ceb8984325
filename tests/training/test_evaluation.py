"""BatchNorm calibration where models are evaluated and shipped (fastmotive/training/evaluation.py, export, eval):
training is the same with it on or off, exports carry the statistics the run reported, a checkpoint taken inside
a motivated episode exports the base the next switch back gives, and ``--bn-buffers keep``."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fastmotive as fm
from fastmotive.families import cifar_resnet
from fastmotive.run.export import load_exported
from fastmotive.training.evaluation import CalibrationBatches, calibrated, evaluate, evaluate_pair

FAST = ["--arch", "resnet20:resnet32", "-b", "64", "--no-progress", "--opt", "sgd", "--lr", "0.05",
        "--warmup-epochs", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def fastmotive(*args):
    proc = subprocess.run([sys.executable, "-m", "fastmotive", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"fastmotive {' '.join(map(str, args))}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def batches(n, seed, size=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def resnet_pair(seed=0):
    torch.manual_seed(seed)
    return fm.MotivatedPair.from_names("resnet20", "resnet32", num_classes=10)


def train(bn_calibrate: int):
    pair = resnet_pair()
    trainer = fm.Trainer(pair, optimizer="adamw", lr=1e-2, condition=fm.LossStreak(k=1), epochs=2,
                         bn_calibrate=bn_calibrate, growth_init="paper", progress=False)   # statistics go stale
    history = trainer.fit(batches(4, 1), batches(2, 2))
    return pair, history


def test_calibration_does_not_change_training():
    raw_pair, raw = train(0)
    tuned_pair, tuned = train(48)
    assert [(s["active"], s["loss"]) for s in raw.steps] == [(s["active"], s["loss"]) for s in tuned.steps]
    assert {s["active"] for s in raw.steps} == {"base", "motivated"}
    assert torch.equal(raw_pair.arena.data, tuned_pair.arena.data)   # weights, BN buffers, optimizer rows
    row, raw_row = tuned.epochs[-1], raw.epochs[-1]
    assert row["bn_calibration_images"] == 48 and raw_row["bn_calibration_images"] == 0
    assert row["base_top1_raw"] == raw_row["base_top1"] and row["motivated_eval_loss_raw"] == \
        raw_row["motivated_eval_loss"]
    assert row["motivated_eval_loss"] != row["motivated_eval_loss_raw"]   # calibration changed the statistics


def test_evaluate_pair_equals_calibrating_by_hand():
    pair, _ = train(0)
    val, train_batches = batches(2, 2), batches(4, 1)
    row = evaluate_pair(pair, val, CalibrationBatches(train_batches), 40)
    before = pair.arena.data.clone()
    for name in ("base", "motivated"):
        model = pair.model(name)
        reference = cifar_resnet(pair.names[0 if name == "base" else 1], num_classes=10)
        reference.load_state_dict(model.state_dict())
        fm.bn_calibration.calibrate_bn(reference, train_batches, 40)
        loss, top1, _ = evaluate(reference, val)
        # the pair runs channels-last (the CIFAR ResNets' auto), the reference contiguously: rounding apart
        assert (row[f"{name}_eval_loss"], row[f"{name}_top1"]) == (pytest.approx(loss, rel=1e-5), top1)
    assert torch.equal(pair.arena.data, before)


class CountedPasses(list):
    """Validation batches that count the passes made over them."""
    passes = 0

    def __iter__(self):
        self.passes += 1
        return super().__iter__()


def test_the_members_are_evaluated_in_one_pass():
    pair, _ = train(0)
    val = CountedPasses(batches(3, 2))
    row = evaluate_pair(pair, val, CalibrationBatches(batches(4, 1)), 40, calibrate=("motivated",))
    assert val.passes == 2, "both members in one pass, then the calibrated one alone for its raw figures"
    for name, suffix in (("base", ""), ("base", "_raw"), ("motivated", "_raw")):
        alone = evaluate(pair.model(name), batches(3, 2))
        assert tuple(row[f"{name}_{f}{suffix}"] for f in ("eval_loss", "top1", "top5")) == alone
    assert row["motivated_eval_loss"] != row["motivated_eval_loss_raw"]
    evaluate_pair(pair, val, raw=True)
    assert val.passes == 3, "nothing calibrated: one pass, raw figures included"


def test_calibrated_block_restores_the_statistics_bitwise():
    pair = resnet_pair()
    with torch.no_grad():
        for _, buf in pair.motivated.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    before = pair.arena.data.clone()
    with calibrated(pair.motivated, batches(2, 3), 32) as used:
        assert used.images == 32 and not torch.equal(pair.arena.data, before)
    assert torch.equal(pair.arena.data, before)


def test_keep_buffers_moves_weights_and_state_but_not_statistics():
    for backend in ("torch", "naive"):
        pair = resnet_pair()
        pair.keep_buffers = True
        with torch.no_grad():
            for model in (pair.base, pair.motivated):
                for t in [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]:
                    t.uniform_(-1, 1)
        base_mean = pair.base.bn1.running_mean.clone()
        motivated_mean = pair.motivated.bn1.running_mean.clone()
        pair.switch_to("motivated", backend=backend)
        assert torch.equal(pair.motivated.bn1.running_mean, motivated_mean)   # kept
        assert torch.equal(pair.motivated.conv1.weight, pair.base.conv1.weight)   # moved
        pair.motivated.bn1.running_mean.add_(1.0)
        pair.switch_to("base", backend=backend)
        assert torch.equal(pair.base.bn1.running_mean, base_mean)


def test_export_carries_the_calibrated_statistics_the_run_reported(tmp_path):
    fastmotive("train", *FAST, "--epochs", "1", "--epoch-batches", "6", "--bn-calibrate", "256",
               "--growth-init", "paper", "--output", tmp_path, "--experiment", "r")   # a calibrated motivated model
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    fastmotive("export", run)
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["bn_calibration"]["images"] == 256
    from fastmotive.data import build_loaders
    _, val, _ = build_loaders("digits", batch_size=64, device="cpu", seed=0)
    for which in ("base", "motivated"):
        model = load_exported(run / "export", which)
        assert evaluate(model, val)[1] == metrics[f"{which}_top1"]
    out = fastmotive("eval", run)
    assert f"{metrics['motivated_top1']:.2f}" in out
    saved = json.loads((run / "eval.json").read_text())
    assert saved["motivated_top1"] == metrics["motivated_top1"]
    assert saved["motivated_top1_raw"] == metrics["motivated_top1_raw"]


def test_a_checkpoint_inside_an_episode_exports_the_trained_base(tmp_path):
    fastmotive("train", *FAST, "--condition", "always", "--max-steps", "3", "--output", tmp_path,
               "--experiment", "m")
    run = tmp_path / "m"
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["active"] == "motivated"
    fastmotive("export", run, "--bn-calibrate", "0")
    assert json.loads((run / "export" / "config.json").read_text())["stopped_in_episode"]
    base = load_file(run / "export" / "base" / "model.safetensors")
    motivated = load_file(run / "export" / "motivated" / "model.safetensors")
    pair = resnet_pair()
    changed = 0
    for entry in pair.weights_map.entries:   # by hand: the motivated tensor's leading slices
        expected = motivated[entry.motivated][tuple(slice(0, n) for n in base[entry.base].shape)]
        assert torch.equal(base[entry.base], expected), entry.base
        changed += not torch.equal(base[entry.base], pair.base.state_dict()[entry.base])
    assert changed > 0   # and it is not the untrained base


def test_eval_of_a_run_without_batchnorm_reports_raw_figures(tmp_path):
    fastmotive("train", "--arch", "vit_tiny_patch16_224:vit_small_patch16_224", "--img-size", "16", "-b", "64",
               "--no-progress", "--epochs", "1", "--epoch-batches", "2", "--val-batches", "1",
               "--output", tmp_path, "--experiment", "v")
    metrics = json.loads((Path(tmp_path) / "v" / "metrics.json").read_text())
    assert metrics["bn_calibration_images"] == 0
    assert metrics["base_top1"] == metrics["base_top1_raw"]


def test_the_no_tf32_fixture_turns_tf32_off(no_tf32):
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_calibrated_statistics_on_the_gpu_match_the_cpu(no_tf32):
    from fastmotive.training.calibration import batchnorm_layers, calibrate_bn
    cpu = cifar_resnet("resnet20", num_classes=10)
    gpu = cifar_resnet("resnet20", num_classes=10).cuda()
    gpu.load_state_dict(cpu.state_dict())
    data = batches(4, 5)
    calibrate_bn(cpu, data, 60)
    calibrate_bn(gpu, [(x.cuda(), y.cuda()) for x, y in data], 60)
    for a, b in zip(batchnorm_layers(cpu), batchnorm_layers(gpu)):
        torch.testing.assert_close(b.running_mean.cpu(), a.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b.running_var.cpu(), a.running_var, rtol=1e-4, atol=1e-5)
