"""Channels-last: layout-free convolution weights re-strided in place, inputs converted by a hook, the same
numbers as the contiguous layout, and --channels-last's auto/on/off (with the old true/false spelling)."""
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

import fastmotive as fm
from fastmotive.cli.main import parse
from fastmotive.config import settings
from fastmotive.core.pair import wants_channels_last
from fastmotive.families import get_family
from fastmotive.training.trainer import Trainer

CL = torch.channels_last


def separable(width: int) -> nn.Sequential:
    """A stem whose two layouts differ (3x3 over 3 channels), then depthwise and pointwise convolutions."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1, groups=width), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, 5))


def make_pair(seed: int = 0) -> fm.MotivatedPair:
    torch.manual_seed(seed)
    return fm.MotivatedPair(separable(4), separable(8))


def batches(n: int = 6):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g)) for _ in range(n)]


def test_layout_free_weights_take_channels_last_strides_in_place():
    pair = make_pair()
    for model in (pair.base, pair.motivated):
        model[0].weight.grad.normal_()   # distinct values, so a moved tensor would show
    before = {(m, n): (p.data_ptr(), p.grad.data_ptr(), p.detach().clone())
              for m in pair.members for n, p in pair.model(m).named_parameters()}
    pair.set_channels_last(True)
    pair.arena.check_bound()
    for m in pair.members:
        model = pair.model(m)
        for layer in (model[3], model[6]):   # depthwise, pointwise: channels-last strides, same bytes
            assert layer.weight.stride()[1] == 1 and layer.weight.is_contiguous(memory_format=CL)
            assert layer.weight.grad.stride() == layer.weight.stride()
        assert model[0].weight.stride() == (27, 9, 3, 1)   # the stem's two orders differ: left contiguous
        for n, p in model.named_parameters():
            ptr, grad_ptr, value = before[(m, n)]
            assert (p.data_ptr(), p.grad.data_ptr()) == (ptr, grad_ptr) and torch.equal(p, value), n
    pair.set_channels_last(False)
    assert pair.base[3].weight.stride() == (9, 9, 3, 1) and not pair.channels_last
    pair.arena.check_bound()


def test_the_input_hook_follows_the_setting():
    pair, seen = make_pair(), []
    pair.base[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    x = torch.randn(2, 3, 8, 8)
    pair.set_channels_last(True)
    pair.base(x)
    pair.set_channels_last(False)
    pair.base(x)
    assert seen == [False, True]   # channels-last, then contiguous again: the hook was removed


def test_channels_last_computes_what_the_contiguous_layout_computes():
    """Same seed, same batches, same (random, seeded) switches: losses and the whole arena agree to rounding
    (SGD: Adam's division by the root of tiny second moments would magnify the rounding of near-zero gradients)."""
    runs = {}
    for on in (False, True):
        pair = make_pair()
        history = Trainer(pair, optimizer="momentum", lr=0.05, epochs=2, condition="random:0.5",
                          channels_last="on" if on else "off", bn_calibrate=0).fit(batches(), batches(2))
        assert pair.channels_last == on
        runs[on] = ([s["loss"] for s in history.steps], [s["active"] for s in history.steps],
                    history.epochs[-1]["motivated_top1"], pair.arena.data.clone())
    (losses, active, top1, arena), (cl_losses, cl_active, cl_top1, cl_arena) = runs[False], runs[True]
    assert active == cl_active and "motivated" in active and "base" in active
    assert cl_losses == pytest.approx(losses, rel=1e-4)
    assert cl_top1 == top1
    torch.testing.assert_close(cl_arena, arena, rtol=1e-4, atol=1e-5)


def test_a_switch_moves_the_same_bytes():
    pairs = [make_pair(), make_pair()]
    pairs[1].set_channels_last(True)
    for pair in pairs:
        torch.manual_seed(7)
        with torch.no_grad():
            for p in pair.base.parameters():
                p.add_(torch.randn(p.shape))   # the same values, written through either layout's view
        pair.switch_to("motivated")
    assert torch.equal(fm.core.arena.as_bits(pairs[0].arena.data), fm.core.arena.as_bits(pairs[1].arena.data))


def test_auto_follows_the_family_on_the_cpu_only():
    def pair(family, device="cpu"):
        return SimpleNamespace(family=get_family(family) if family else None, device=torch.device(device))
    assert wants_channels_last("auto", pair("efficientnet"))
    assert wants_channels_last("auto", pair("cifar_resnet"))
    assert not wants_channels_last("auto", pair("resnet"))   # measured slower (docs/benchmarks.md)
    assert not wants_channels_last("auto", pair("efficientnet", "cuda"))
    assert not wants_channels_last("auto", pair(None))   # a hand-made pair
    assert wants_channels_last("on", pair(None)) and not wants_channels_last("off", pair("efficientnet"))
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        wants_channels_last("yes", pair(None))


def test_a_trainer_on_an_efficientnet_pair_runs_channels_last_by_default():
    pair = fm.MotivatedPair.from_arch("efficientnet_b0:b1", num_classes=3)
    Trainer(pair, epochs=1)
    assert pair.channels_last and pair.base.blocks[1][0].conv_pw.weight.is_contiguous(memory_format=CL)


def test_the_flag_and_the_old_true_false_spelling(tmp_path):
    def flag(*argv):
        return settings.from_namespace(parse(["train", *argv])).channels_last
    assert flag() == "auto" and flag("--channels-last") == "on" and flag("--channels-last", "off") == "off"
    with pytest.raises(SystemExit):
        parse(["train", "--channels-last", "maybe"])
    # runs and configs written before the setting took auto/on/off said true or false
    assert settings.from_record({"channels_last": True}).channels_last == "on"
    assert settings.from_record({"channels_last": False}).channels_last == "off"
    config = tmp_path / "old.yaml"
    config.write_text(yaml.safe_dump({"channels_last": True}))
    assert settings.read_yaml(config)["channels_last"] == "on"
    assert Trainer(make_pair(), channels_last=True).pair.channels_last


@pytest.mark.parametrize("layout,expected", [("auto", True), ("off", False)])
def test_a_saved_run_reopens_in_the_layout_it_trained_with(tmp_path, layout, expected, one_thread):
    """Evaluation and export (calibration, the ONNX check) see the run's own memory format."""
    from fastmotive.cli.main import main
    from fastmotive.run.saved import open_run
    assert main(["train", "--arch", "resnet20:resnet32", "--epochs", "1", "--epoch-batches", "1", "--val-batches",
                 "1", "-b", "8", "--no-progress", "--channels-last", layout, "--output", str(tmp_path),
                 "--experiment", "r"]) == 0
    assert open_run(tmp_path / "r").pair.channels_last == expected
