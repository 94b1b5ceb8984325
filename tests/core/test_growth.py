"""growth_init="identity": right after the first switch up the motivated model computes the base's function."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch import nn

import fastmotive as fm
from fastmotive.core.growth import GROWTH_INITS, differential_blocks, init_growth
from fastmotive.errors import ConfigError


def digits(n: int = 16) -> torch.Tensor:
    """Real images: scikit-learn's digits, 8x8 upscaled to 32x32, 3 channels, normalised."""
    x = torch.tensor(load_digits().images[:n], dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return (x - 0.5) / 0.5


def calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """BN running statistics from one batch, so eval-mode logits are not vanishingly small (EfficientNet)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)


def pair_for(spec: str, seed: int = 0) -> fm.MotivatedPair:
    torch.manual_seed(seed)
    base, motivated = spec.split(":")
    kwargs = {"img_size": 32} if base.startswith("vit") else {}
    return fm.MotivatedPair.from_names(base, motivated, num_classes=10, backend="torch", **kwargs)


def scramble(model: nn.Module, seed: int = 1) -> None:
    """Noise on every parameter, so no constructor init (timm ResNets' own ``zero_init_last``) does the work."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)


def logits_gap(pair: fm.MotivatedPair, mode: str, x: torch.Tensor, **kwargs) -> tuple[float, float]:
    """(max |motivated - base| logit, max |base| logit) after `init_growth(mode)` and the first switch up,
    starting from a scrambled motivated model."""
    scramble(pair.motivated)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_growth(pair, mode, **kwargs)
    calibrate(pair.base, x)
    pair.base.eval()
    pair.motivated.eval()
    with torch.no_grad():
        reference = pair.base(x)
        pair.switch_to("motivated")
        got = pair.motivated(x)
    return (got - reference).abs().max().item(), reference.abs().max().item()


CNN_SPECS = ["resnet20:resnet32", "efficientnet_b0:efficientnet_b2", "resnet18:resnet34", "resnet50:resnet101"]


@pytest.mark.parametrize("spec", CNN_SPECS)
def test_identity_keeps_the_base_function(spec, one_thread):
    gap, scale = logits_gap(pair_for(spec), "identity", digits())
    assert scale > 1e-3     # the logits carry signal, so the check below can fail
    assert gap <= 1e-5 * max(scale, 1.0)


@pytest.mark.parametrize("spec", ["resnet20:resnet32", "efficientnet_b0:efficientnet_b2", "resnet18:resnet34"])
def test_paper_init_changes_the_function(spec, one_thread):
    gap, scale = logits_gap(pair_for(spec), "paper", digits())
    assert gap > 1e-3 * scale


def test_identity_report_names_blocks_and_tensors():
    pair = pair_for("resnet20:resnet32")
    assert differential_blocks(pair) == [f"layer{s}.{j}" for s in (1, 2, 3) for j in (2, 3)]
    report = init_growth(pair, "identity")
    assert report.identity_blocks == differential_blocks(pair) and report.exact
    assert set(report.zeroed) == {f"layer{s}.{j}.bn2.{t}" for s in (1, 2, 3) for j in (2, 3)
                                  for t in ("weight", "bias")}
    assert report.summary()["identity_blocks"] == 6
    assert init_growth(pair_for("resnet20:resnet32"), "paper").zeroed == {}
    assert GROWTH_INITS == ("paper", "identity")
    with pytest.raises(ConfigError, match="unknown growth init"):
        init_growth(pair, "net2net")


def test_efficientnet_blocks_and_classifier_columns():
    pair = pair_for("efficientnet_b0:efficientnet_b2")
    report = init_growth(pair, "identity")
    assert "blocks.0.1" in report.identity_blocks   # a DepthwiseSeparableConv: its last BN is bn2
    assert "blocks.0.1.bn2.weight" in report.zeroed and "blocks.1.2.bn3.bias" in report.zeroed
    head = pair.motivated.classifier.weight
    assert head[:, 1280:].abs().sum() == 0 and head[:, :1280].abs().sum() > 0
    assert "blocks.6.0.se.conv_reduce.weight" in report.zeroed   # SE reduce reads widened channels
    blocks = pair.weights_map.differential_blocks()
    assert "blocks.0.1" in blocks and "blocks.0.1.se" not in blocks and len(blocks) == 7


def test_efficientnet_block_without_skip_raises():
    pair = pair_for("efficientnet_b0:efficientnet_b2")
    pair.motivated.blocks[3][3].has_skip = False     # as a stride-2 or channel-changing block would be
    with pytest.raises(ConfigError, match=r"'blocks.3.3' \(InvertedResidual\) has no residual connection"):
        init_growth(pair, "identity")


def test_vit_measured_gap_and_warning(one_thread):
    """A LayerNorm over widened features cannot keep the function exactly: measure the approximation."""
    pair = pair_for("vit_tiny_patch16_224:vit_small_patch16_224")
    with pytest.warns(UserWarning, match="LayerNorm"):
        report = init_growth(pair, "identity")
    assert not report.exact and report.approximations
    qkv = pair.motivated.blocks[0].attn.qkv.weight.view(3, 384, 384)
    assert qkv[:, :192, 192:].abs().sum() == 0 and qkv[:, 192:, 192:].abs().sum() > 0   # per q/k/v chunk
    x = digits()
    gap, scale = logits_gap(pair, "identity", x)
    paper_gap, _ = logits_gap(pair_for("vit_tiny_patch16_224:vit_small_patch16_224"), "paper", x)
    print(f"\nViT tiny:small at 32 px: identity gap {gap:.4f}, paper gap {paper_gap:.4f}, logit scale {scale:.4f}")
    # the differential stream features are exactly zero, so only the LayerNorm statistics differ
    assert pair.motivated.cls_token[..., 192:].abs().sum() == 0
    assert gap < paper_gap


def test_vit_mirror_keeps_the_function(one_thread):
    """tiny:small doubles the width: mirroring the embedding keeps every LayerNorm's statistics."""
    pair = pair_for("vit_tiny_patch16_224:vit_small_patch16_224")
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no approximation, so no warning
        report = init_growth(pair, "identity", mirror=True)
    assert report.exact and "pos_embed" in report.mirrored and "blocks.11.mlp.fc2.bias" in report.mirrored
    torch.testing.assert_close(pair.motivated.cls_token[..., 192:], pair.base.cls_token)
    gap, scale = logits_gap(pair, "identity", digits(), mirror=True)
    print(f"\nViT tiny:small mirror gap {gap:.2e} (logit scale {scale:.3f})")
    assert gap <= 1e-5 * max(scale, 1.0)


def test_training_reaches_zeroed_tensors():
    pair = pair_for("resnet20:resnet32")
    init_growth(pair, "identity")
    pair.switch_to("motivated")
    pair.motivated.train()
    x, y = digits(8), torch.arange(8)
    F.cross_entropy(pair.motivated(x), y).backward()
    bn = pair.motivated.layer1[2].bn2
    assert bn.weight.grad.abs().sum() > 0 and bn.bias.grad.abs().sum() > 0

    pair = pair_for("efficientnet_b0:efficientnet_b2")
    init_growth(pair, "identity")
    pair.switch_to("motivated")
    pair.motivated.train()
    F.cross_entropy(pair.motivated(digits(4)), torch.arange(4)).backward()
    assert pair.motivated.classifier.weight.grad[:, 1280:].abs().sum() > 0
    assert pair.motivated.blocks[1][2].bn3.weight.grad.abs().sum() > 0


# -- hand-made nested pairs, inferred maps ------------------------------------------------------------------
class Residual(nn.Module):
    """A pre-activation block, x + bn(conv(act(x))); `downsample` (None: identity skip) is what the generic skip
    rule reads. LeakyReLU everywhere: no activation hides a change, so the paper-init check below can fail."""

    def __init__(self, width: int, downsample: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.downsample = nn.Conv2d(width, width, 1) if downsample else None

    def forward(self, x):
        return self.bn(self.conv(F.leaky_relu(x, 0.1))) + (x if self.downsample is None else self.downsample(x))


class Net(nn.Module):
    def __init__(self, widths, depth, hidden, depthwise, downsample_extra=False, base_depth=None):
        super().__init__()
        w0, w1 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, padding=1), nn.BatchNorm2d(w0), nn.LeakyReLU(0.1),
                                  nn.Conv2d(w0, w0, 3, padding=1, groups=w0) if depthwise else nn.Identity(),
                                  nn.Conv2d(w0, w1, 1), nn.BatchNorm2d(w1), nn.LeakyReLU(0.1))
        base_depth = depth if base_depth is None else base_depth
        self.blocks = nn.Sequential(*[Residual(w1, downsample_extra and j >= base_depth) for j in range(depth)])
        self.head = nn.Sequential(nn.Linear(w1, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, 5))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def randomise_buffers(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w0=st.integers(1, 6), w1=st.integers(1, 6), hidden=st.integers(1, 8), extra=st.lists(st.integers(0, 5),
       min_size=3, max_size=3), depth=st.integers(0, 2), extra_depth=st.integers(0, 2), depthwise=st.booleans(),
       seed=st.integers(0, 2**16))
def test_nested_pairs_keep_the_function(w0, w1, hidden, extra, depth, extra_depth, depthwise, seed):
    torch.manual_seed(seed)
    base = Net((w0, w1), depth, hidden, depthwise)
    motivated = Net((w0 + extra[0], w1 + extra[1]), depth + extra_depth, hidden + extra[2], depthwise)
    for m in (base, motivated):
        randomise_buffers(m)
    pair = fm.MotivatedPair(base, motivated, backend="torch")
    report = init_growth(pair, "identity")
    assert report.exact and len(report.identity_blocks) == extra_depth
    x = torch.randn(4, 3, 6, 6)
    base.eval(), motivated.eval()
    with torch.no_grad():
        reference = base(x)
        pair.switch_to("motivated")
        got = motivated(x)
    assert torch.allclose(got, reference, atol=1e-5, rtol=1e-5)

    torch.manual_seed(seed)   # the same pair without the init: its differential parts change the logits
    if sum(extra) + extra_depth:
        other = fm.MotivatedPair(Net((w0, w1), depth, hidden, depthwise),
                                 Net((w0 + extra[0], w1 + extra[1]), depth + extra_depth, hidden + extra[2], depthwise),
                                 backend="torch")
        for m in (other.base, other.motivated):
            randomise_buffers(m)
            m.eval()
        with torch.no_grad():
            reference = other.base(x)
            other.switch_to("motivated")
            assert not torch.allclose(other.motivated(x), reference, atol=1e-5, rtol=1e-5)


def test_differential_block_without_skip_is_named():
    pair = fm.MotivatedPair(Net((2, 3), 1, 4, False), Net((2, 3), 3, 4, False, downsample_extra=True, base_depth=1),
                            backend="torch")
    with pytest.raises(ConfigError, match=r"'blocks.1' \(Residual\) has no residual connection"):
        init_growth(pair, "identity")


def test_unknown_skip_warns_by_name():
    class Plain(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.extra = nn.ModuleDict({f"p{i}": nn.Linear(3, 3) for i in range(n)})

        def forward(self, x):
            return self.a(x)
    pair = fm.MotivatedPair(Plain(0), Plain(1), backend="torch")
    with pytest.warns(UserWarning, match=r"cannot tell whether differential block 'extra.p0'"):
        report = init_growth(pair, "identity")
    assert not report.exact
