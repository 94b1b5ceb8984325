"""FLOPs accounting (fastmotive/flops.py): hand-counted nets, F_{X-Y} from step logs, the paper's ratios."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastmotive as fm
from fastmotive.families.cifar_resnet import cifar_resnet
from fastmotive.flops import (FlopCount, acc_f_ratio, acc_per_flops, average_train_flops, model_flops,
                              pair_flops, run_flops)


class Known(nn.Module):
    """conv 3->4 (3x3, pad 1), BN, ReLU, depthwise conv 4->4 (3x3, groups 4), x*2, global pool, linear 4->10."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.dw(F.relu(self.bn(self.conv(x)))) * 2
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_known_net_counts_by_hand():
    # one fused multiply-add = one FLOP; 8x8 input, 'same' padding keeps 8x8 everywhere
    conv = 8 * 8 * 4 * 3 * 3 * 3          # out pixels x out channels x in channels x kernel = 6912
    bn = 2 * 4 * 8 * 8                     # eval BN: scale and shift per element (fvcore's convention) = 512
    dw = 8 * 8 * 4 * 3 * 3                 # depthwise: one input channel per output channel = 2304
    pool = 4 * 8 * 8                       # one add per input element = 256
    fc = 4 * 10                            # the matmul; fvcore does not count the bias add = 40
    count = model_flops(Known(), 8)
    assert count.by_operator == {"conv": conv + dw, "batch_norm": bn, "adaptive_avg_pool2d": pool, "linear": fc}
    assert count.total == conv + bn + dw + pool + fc == 10024
    assert count.skipped == {"aten::mul": 1}          # x * 2 has no formula: reported, counted 0
    assert count.input_shape == (1, 3, 8, 8)
    assert model_flops(Known(), (8, 16)).total == 2 * count.total - fc   # twice the pixels, the head unchanged


def test_count_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    net = Known().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    model_flops(net, 8)
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    net.eval()
    model_flops(net, 8)
    assert not net.training


@pytest.mark.parametrize("name, blocks", [("resnet20", 3), ("resnet32", 5)])
def test_cifar_resnet_conv_flops_closed_form(name, blocks):
    # stem 3->16 at 32x32; every 3x3 conv after it costs 32*32*16*16*9 = 2359296 (channels double as the side
    # halves), except the two stage-entry convs, which have half the input channels.
    per_conv, stem = 32 * 32 * 16 * 16 * 9, 32 * 32 * 16 * 3 * 9
    expected = stem + 3 * 2 * blocks * per_conv - 2 * per_conv // 2
    assert model_flops(cifar_resnet(name), 32).by_operator["conv"] == expected   # resnet20: 40.55 M, the usual "41 M"


def test_pair_flops_and_nesting():
    pair = fm.MotivatedPair.from_arch("resnet20:resnet32", num_classes=10)
    counts = pair_flops(pair, 32)
    assert counts["base"].total < counts["motivated"].total
    assert counts["base"].skipped == {"aten::add": 9, "aten::pad": 2}   # residual adds, option-A shortcut pads


# -- F_{X-Y} from a step log --------------------------------------------------------------------------

def _log(*rows):
    return [{"step": i, "epoch": 0, "batch": i, "active": a, "images": n} for i, (a, n) in enumerate(rows)]


def test_average_train_flops_weights_by_images():
    steps = _log(("base", 32), ("motivated", 32), ("motivated", 16), ("base", 8))
    assert average_train_flops(steps, 100, 300) == pytest.approx((32 * 100 + 48 * 300 + 8 * 100) / 88)
    # an unweighted mean over steps would give 200: the batch sizes matter
    assert average_train_flops(steps, 100, 300) != pytest.approx(200)


def test_average_train_flops_from_csv_rows_and_edges():
    csv_rows = [{"active": "base", "images": "32"}, {"active": "motivated", "images": "32"}]   # steps.csv strings
    assert average_train_flops(csv_rows, 10, 30) == 20
    base_only = _log(*[("base", 32)] * 7, ("base", 5))
    assert average_train_flops(base_only, 40931968, 69472896) == 40931968   # exactly F_{X-C}
    assert average_train_flops(_log(("motivated", 3)), 1, 9) == 9
    with pytest.raises(ValueError, match="empty step log"):
        average_train_flops([], 1, 2)
    with pytest.raises(ValueError, match="'base' or 'motivated'"):
        average_train_flops(_log(("teacher", 4)), 1, 2)
    with pytest.raises(ValueError, match="batch size"):
        average_train_flops([{"active": "base"}], 1, 2)


def test_run_flops_figures():
    counts = {"base": FlopCount(100, skipped={"aten::add": 1}), "motivated": FlopCount(300)}
    out = run_flops(_log(("base", 10), ("motivated", 30)), counts)
    assert out["base_flops"] == 100 and out["motivated_flops"] == 300
    assert out["train_flops_per_image"] == 250 and out["motivated_image_fraction"] == 0.75
    assert out["flops_skipped_ops"] == {"base": {"aten::add": 1}, "motivated": {}}
    assert "1 fused multiply-add = 1 FLOP" in out["flops_convention"]
    assert run_flops([], counts)["train_flops_per_image"] is None


def test_trainer_metrics_json_records_flops(tmp_path):
    torch.manual_seed(0)
    pair = fm.MotivatedPair(Known(), Known())
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)) for _ in range(4)]
    data[3] = (data[3][0][:4], data[3][1][:4])    # a short last batch: F_{X-Y} weighs by images
    trainer = fm.Trainer(pair, condition=fm.parse_condition("streak:1"), epochs=1, output=tmp_path,
                         flops=pair_flops(pair, 8))
    trainer.fit(data, data[:1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    steps = trainer.history.steps
    assert any(s["active"] == "motivated" for s in steps)
    assert metrics["base_flops"] == metrics["motivated_flops"] == 10024
    assert metrics["train_flops_per_image"] == average_train_flops(steps, 10024, 10024)
    assert metrics["motivated_image_fraction"] == pytest.approx(
        sum(s["images"] for s in steps if s["active"] == "motivated") / 22)


# -- ACC/FLOPs and ACC/F_Ratio against the paper's own numbers ----------------------------------------

def test_paper_table2_resnet50_101():
    # ImageNet: ResNet-50-C 78.06 at 3.8 GFLOPs, Res-50-101-B 78.40 at 3.84, ResNet-101-C 79.80 at 7.6
    q = acc_f_ratio(78.40, 78.06, 79.80, 3.84, 3.8, 7.6)
    assert q["acc_flops_xyb"].value == pytest.approx(8.5)
    assert round(q["acc_flops_yc"].value, 2) == 0.46
    assert q["ratio"].value == pytest.approx(18.5, abs=0.1)


def test_paper_table4_efficientnet_b2_b3():
    # EfficientNet B2-C 80.18 at 1.0 GFLOPs, Eff-2-3B 80.32 at 1.01, B3-C 80.93 at 1.8
    q = acc_f_ratio(80.32, 80.18, 80.93, 1.01, 1.0, 1.8)
    assert q["acc_flops_xyb"].value == pytest.approx(14)
    assert round(q["acc_flops_yc"].value, 2) == 0.94
    assert q["ratio"].value == pytest.approx(14.9, abs=0.05)


def test_undefined_cases_give_reasons_not_inf():
    no_motivated = acc_f_ratio(78.3, 78.06, 79.8, 3.8, 3.8, 7.6)     # F_{X-Y} = F_{X-C}: no motivated step
    assert no_motivated["acc_flops_xyb"].value is None and no_motivated["ratio"].value is None
    assert "no motivated step" in no_motivated["ratio"].reason
    assert no_motivated["acc_flops_yc"].value == pytest.approx(1.74 / 3.8)
    same_models = acc_f_ratio(78.4, 78.06, 79.8, 3.84, 3.8, 3.8)      # Y-C no bigger than X-C
    assert same_models["acc_flops_yc"].value is None and "Y-C vs X-C" in same_models["ratio"].reason
    no_gain = acc_f_ratio(78.4, 78.06, 78.06, 3.84, 3.8, 7.6)         # Y-C gained nothing: division by 0
    assert no_gain["acc_flops_yc"].value == 0 and no_gain["ratio"].value is None
    assert "did not beat" in no_gain["ratio"].reason
    worse = acc_f_ratio(77.0, 78.06, 77.5, 3.84, 3.8, 7.6)            # both negative: a positive ratio would lie
    assert worse["ratio"].value is None
    assert acc_per_flops(None, 78.0, 3.84, 3.8).reason.endswith("(no epoch finished)")
    for q in (*no_motivated.values(), *same_models.values(), *no_gain.values(), *worse.values()):
        assert q.value is None or math.isfinite(q.value)
        assert q.format().startswith("undefined (") or q.value is not None
    assert acc_f_ratio(78.40, 78.06, 79.80, 3.84, 3.8, 7.6)["ratio"].format(".1f") == "18.6"


def test_a_count_is_remembered_for_the_same_model_and_input(monkeypatch):
    first = model_flops(Known(), 8)
    counted = []
    monkeypatch.setattr("fastmotive.flops._count", lambda model, x: counted.append(x.shape) or first)
    assert model_flops(Known().train(), 8) == first and not counted, "the same structure: from the cache"
    model_flops(Known(), 16)
    model_flops(nn.Sequential(Known()), 8)
    assert counted == [(1, 3, 16, 16), (1, 3, 8, 8)], "another input or another module tree counts again"


def _net_with(forward):
    """A class with the same name, layers and repr as every other one made here, and the given forward."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
    Net.forward = forward
    return Net()


def test_an_edited_forward_is_counted_again():
    once = _net_with(lambda self, x: self.conv(x))
    twice = _net_with(lambda self, x: self.conv(self.conv(x[:, :3].repeat(1, 1, 1, 1))[:, :3]))
    assert repr(once) == repr(twice)
    assert model_flops(twice, 8).total > model_flops(once, 8).total == model_flops(once, 8).total


def test_no_cache_counts_the_same(monkeypatch):
    cached = model_flops(Known(), 8)
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", "off")
    assert model_flops(Known(), 8) == cached
