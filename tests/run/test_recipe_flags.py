"""Issue 12's trainer-side flags, each against an independent reference: gradient accumulation (a large batch
for SGD without BatchNorm; one condition update per optimizer step), clipping (torch's clip_grad_*), the losses
(timm's), --warmup-prefix/--warmup-lr, --opt-eps/--opt-betas, per-member --drop/--drop-path, single-model runs
and --initial-checkpoint."""
import json

import pytest
import timm
import timm.loss
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import fastmotive as fm
from fastmotive.cli.main import main
from fastmotive.config import settings
from fastmotive.core.arena import Arena
from fastmotive.errors import CheckpointError, ConfigError
from fastmotive.families import get_family
from fastmotive.optim import create_optimizer
from fastmotive.run.initial_weights import load_initial_weights
from fastmotive.run.parts import build_pair
from fastmotive.training.schedules import make_schedule
from fastmotive.training.step import TrainStep, clip_gradient, make_loss
from fastmotive.training.trainer import StepResult, Trainer
from tests.helpers import Scripted


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, width), nn.Linear(width, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


def mlp_pair(seed=0):
    torch.manual_seed(seed)
    return fm.MotivatedPair(Mlp(5), Mlp(7))


def sgd_step(pair):
    opt = create_optimizer("sgd", pair.segment("base"), lr=0.1, weight_decay=0.0, momentum=0.9)
    return TrainStep({"base": pair.base}, {"base": pair.base}, {"base": opt})


def test_grad_accumulation_equals_one_large_batch_for_sgd_without_bn():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)
    big, accumulated = mlp_pair(), mlp_pair()
    loss_big = sgd_step(big)("base", x, y, 0.1, 0).loss
    loss_acc = sgd_step(accumulated)("base", list(x.split(4)), list(y.split(4)), 0.1, 0).loss
    assert loss_acc == pytest.approx(loss_big, rel=1e-6)   # the mean of equal micro-batches' means
    torch.testing.assert_close(accumulated.segment("base").param, big.segment("base").param, rtol=1e-6, atol=1e-7)
    assert not torch.equal(big.segment("base").param, mlp_pair().segment("base").param)   # it did train


def test_grad_accumulation_one_condition_update_and_switch_per_optimizer_step():
    batches = [(torch.randn(2, 12), torch.randint(0, 4, (2,))) for _ in range(8)]
    step_fn = Scripted([1.0, 0.9, 0.8, 0.7])   # four optimizer steps of two batches each
    seen = []

    def recording(model, images, labels, lr, step):
        seen.append((len(images), sum(map(len, labels))))
        return step_fn(model, images, labels, lr, step)
    trainer = Trainer(mlp_pair(), condition="streak:2", epochs=1, grad_accum_steps=2, step_fn=recording,
                      sched="constant", warmup_epochs=0)
    history = trainer.fit(batches)
    assert seen == [(2, 4)] * 4
    assert [s["step"] for s in history.steps] == [0, 1, 2, 3] and {s["images"] for s in history.steps} == {4}
    # the same decisions as a run without accumulation whose four batches had these four losses
    plain = Trainer(mlp_pair(), condition="streak:2", epochs=1, step_fn=Scripted([1.0, 0.9, 0.8, 0.7]),
                    sched="constant", warmup_epochs=0).fit(batches[:4])
    assert [s["active"] for s in history.steps] == [s["active"] for s in plain.steps]
    assert "motivated" in [s["active"] for s in history.steps]


def test_grad_accumulation_longer_than_an_epoch_is_refused():
    with pytest.raises(ConfigError, match="grad-accum-steps 4"):
        Trainer(mlp_pair(), epochs=1, grad_accum_steps=4, step_fn=lambda *a: StepResult(1.0)).fit(
            [(torch.randn(2, 12), torch.zeros(2, dtype=torch.long))] * 3)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_matches_torch(mode):
    pair, reference = mlp_pair(), Mlp(5)
    reference.load_state_dict(pair.base.state_dict())
    x, y = torch.randn(8, 12), torch.randint(0, 4, (8,))
    for model in (pair.base, reference):
        (F.cross_entropy(model(x), y) * 50).backward()   # large enough to clip
    clip_gradient(pair.segment("base").grad, pair.base, 0.5, mode)
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    else:
        torch.nn.utils.clip_grad_value_(reference.parameters(), 0.5)
    for (name, p), q in zip(pair.base.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_losses_are_timms():
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    soft = torch.softmax(torch.randn(6, 5), 1)
    torch.testing.assert_close(make_loss(smoothing=0.1)(logits, labels),
                               F.cross_entropy(logits, labels, label_smoothing=0.1))
    torch.testing.assert_close(make_loss()(logits, soft), timm.loss.SoftTargetCrossEntropy()(logits, soft))
    torch.testing.assert_close(make_loss(bce=True, smoothing=0.1)(logits, labels),
                               timm.loss.BinaryCrossEntropy(smoothing=0.1)(logits, labels))
    torch.testing.assert_close(make_loss(bce=True)(logits, soft),
                               F.binary_cross_entropy_with_logits(logits, soft))


def test_warmup_prefix_and_warmup_lr():
    common = dict(lr=1.0, total_steps=100, steps_per_epoch=10, warmup_epochs=5, warmup_lr=0.1,
                  decay_epochs=2, decay_rate=0.5)
    plain, prefix = make_schedule("step", **common), make_schedule("step", warmup_prefix=True, **common)
    assert plain(0) == prefix(0) == 0.1
    assert plain(50) == 0.5 ** 2 and prefix(50) == 1.0   # epoch 5: after 2 decays, or at the start of decay
    assert prefix(70) == 0.5 and prefix(90) == 0.25


def test_opt_eps_and_betas_reach_the_optimizers():
    trainer = Trainer(mlp_pair(), opt="adamw", opt_eps=1e-6, opt_betas=(0.8, 0.95))
    for opt in trainer.optimizers.values():
        assert (opt.eps, opt.beta1, opt.beta2) == (1e-6, 0.8, 0.95)


def config(**changes):
    return settings.replace(settings.TrainConfig(), **changes)


def drop_probs(model):
    return [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]


def test_per_member_dropout_reaches_the_models_and_keeps_the_map():
    kwargs = {"num_classes": 10, "img_size": 32}
    plain = build_pair(config(arch="efficientnet_b0:b2"), kwargs, "cpu")
    auto = build_pair(config(arch="efficientnet_b0:b2", drop="auto", drop_path="0.1:0.3"), kwargs, "cpu")
    assert (auto.base.drop_rate, auto.motivated.drop_rate) == (0.2, 0.3)   # each member's published rate
    for model, name, rate in ((auto.base, "efficientnet_b0", 0.1), (auto.motivated, "efficientnet_b2", 0.3)):
        reference = timm.create_model(name, num_classes=10, drop_path_rate=rate)
        assert drop_probs(model) == drop_probs(reference) and max(drop_probs(model)) > 0
    assert plain.weights_map.to_json() == auto.weights_map.to_json()
    with pytest.raises(ConfigError, match="--drop-path: resnet20"):
        build_pair(config(arch="resnet20:resnet32", drop_path="0.1"), kwargs, "cpu")


def test_single_model_allocates_one_model_and_never_switches():
    torch.manual_seed(0)
    pair = fm.MotivatedPair.from_arch("resnet20", num_classes=4)
    assert pair.motivated is None and pair.members == ("base",)
    alone = Arena(get_family("cifar_resnet").build("resnet20", num_classes=4), None)
    assert pair.arena.columns == alone.columns == sum(-(-s.units // 16) * 16 for s in alone.slots.values())
    with pytest.raises(ValueError, match="single-model"):
        pair.switch_to("motivated")
    with pytest.raises(ConfigError, match="trains one model alone"):   # the command line's rule, refused alike
        Trainer(pair, condition="always", epochs=1, warmup_epochs=0)
    trainer = Trainer(pair, epochs=1, warmup_epochs=0)
    assert trainer.config.condition == "never"
    history = trainer.fit([(torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))) for _ in range(3)])
    assert {s["active"] for s in history.steps} == {"base"}


def test_single_model_refuses_an_explicit_condition(tmp_path, capsys):
    assert main(["train", "--arch", "resnet20", "--condition", "streak:2", "--output", str(tmp_path)]) == 2
    assert "trains one model alone" in capsys.readouterr().err


def tiny_run(tmp_path, name, *flags):
    assert main(["train", "--arch", "resnet20", "--epochs", "1", "--epoch-batches", "2", "--val-batches", "1",
                 "-b", "16", "--bn-calibrate", "32", "--output", str(tmp_path), "--experiment", name,
                 "--no-progress", *flags]) == 0
    return tmp_path / name


def test_initial_checkpoint_round_trip(tmp_path):
    run = tiny_run(tmp_path, "source")
    assert main(["export", str(run)]) == 0
    exported = load_file(run / "export" / "base" / "model.safetensors")
    arch = settings.replace(config(arch="resnet20"), initial_checkpoint=str(run / "export" / "base" / "model.safetensors"))
    pair = build_pair(arch, {"num_classes": 10, "img_size": 32}, "cpu")
    assert load_initial_weights(pair, arch.initial_checkpoint) == []
    for name, tensor in pair.base.state_dict().items():
        assert torch.equal(tensor, exported[name]), name
    pair.arena.check_bound()


def test_initial_checkpoint_drops_a_classifier_of_another_class_count(tmp_path):
    run = tiny_run(tmp_path, "source")
    pair = build_pair(config(arch="resnet20"), {"num_classes": 3, "img_size": 32}, "cpu")
    head_before = pair.base.fc.weight.clone()
    assert load_initial_weights(pair, f"{run}:base") == ["fc.bias", "fc.weight"]
    assert torch.equal(pair.base.fc.weight, head_before)
    source = fm.MotivatedPair.from_arch("resnet20", num_classes=10)
    assert not torch.equal(pair.base.conv1.weight, source.base.conv1.weight)


def test_initial_checkpoint_of_another_model_names_the_tensors(tmp_path):
    run = tiny_run(tmp_path, "source")
    pair = build_pair(config(arch="resnet32"), {"num_classes": 10, "img_size": 32}, "cpu")
    with pytest.raises(CheckpointError, match=r"does not fit the base model \(resnet32\): layer1.3.conv1.weight "
                                              "is missing"):
        load_initial_weights(pair, f"{run}:base")
    with pytest.raises(CheckpointError, match="no such file"):
        load_initial_weights(pair, str(tmp_path / "nothing.safetensors"))


def test_resume_is_bitwise_with_every_augmentation_on(tmp_path):
    """A run stopped mid-epoch and resumed trains the same weights as one that never stopped, with RandAugment,
    random erasing, Mixup and CutMix drawing from (seed, epoch, batch)."""
    flags = ["--arch", "resnet20:resnet32", "--epochs", "2", "--epoch-batches", "3", "--val-batches", "1", "-b", "8",
             "--bn-calibrate", "16", "--output", str(tmp_path), "--no-progress", "--aa", "rand-m9-n2-mstd0.5",
             "--mixup", "0.8", "--cutmix", "1.0", "--reprob", "0.25", "--smoothing", "0.1", "--condition", "streak:1"]
    assert main(["train", *flags, "--experiment", "whole"]) == 0
    assert main(["train", *flags, "--experiment", "cut", "--max-steps", "4"]) == 0
    assert main(["train", "--resume", str(tmp_path / "cut"), "--no-progress"]) == 0
    whole, cut = (torch.load(tmp_path / name / "last.pt", weights_only=True) for name in ("whole", "cut"))
    assert torch.equal(whole["arena"], cut["arena"])
    assert (tmp_path / "whole" / "steps.csv").read_text() == (tmp_path / "cut" / "steps.csv").read_text()


def test_a_resume_keeps_the_recorded_logging_and_checkpointing_and_adds_up_wall_time(tmp_path):
    from fastmotive.config.settings import TrainConfig, resume_config
    saved = {"checkpoint_every": 3, "log_tensorboard": True, "check_sync": 0, "log_wandb": False}
    assert resume_config(TrainConfig(), saved, set(), "run").checkpoint_every == 3
    assert resume_config(TrainConfig(), saved, set(), "run").log_tensorboard is True
    given = TrainConfig(checkpoint_every=5)
    assert resume_config(given, saved, {"checkpoint_every"}, "run").checkpoint_every == 5   # given again: it wins
    flags = ["--arch", "resnet20", "--epochs", "2", "--epoch-batches", "2", "--val-batches", "1", "-b", "16",
             "--no-progress", "--bn-calibrate", "16", "--output", str(tmp_path), "--experiment", "r"]
    assert main(["train", *flags, "--max-steps", "2"]) == 0
    first = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0
    whole = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert whole["epochs"] == 2 and whole["wall_s"] > first["wall_s"]   # the first session's time counts too
    assert whole["images_per_sec"] == pytest.approx(2 * 2 * 16 / whole["wall_s"])
