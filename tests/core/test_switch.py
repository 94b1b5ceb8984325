"""The switch against an independent per-tensor reference, for every family and every backend."""
import functools

import pytest
import torch
from torch import nn

import fastmotive as fm
from fastmotive.families import tensor_shapes

PAIRS = {
    "efficientnet_b0:b1": {"num_classes": 10},
    "efficientnet_b0:b2": {"num_classes": 10},
    "resnet20:resnet32": {"num_classes": 10},
    "resnet18:34": {"num_classes": 10},
    "vit_tiny_patch16_224:vit_small_patch16_224": {"num_classes": 10, "img_size": 32},
    "vit_tiny_patch16_224:small": {"num_classes": 10, "img_size": 32, "depth": 1},   # small enough for the interpreter
}


class Tiny(nn.Module):
    """A hand-made non-timm family: conv + BN + linear, width-scaled; the motivated one has an extra layer."""

    def __init__(self, width: int, extra: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 5)
        self.extra = nn.Linear(width, width) if extra else None

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(x if self.extra is None else x + self.extra(x))


@functools.cache
def _built(spec: str) -> fm.MotivatedPair:
    if spec == "tiny":
        return fm.MotivatedPair(Tiny(6), Tiny(9, extra=True))
    torch.manual_seed(0)
    return fm.MotivatedPair.from_arch(spec, **PAIRS[spec])


def fresh(spec: str, seed: int = 0) -> fm.MotivatedPair:
    """The cached pair with every arena row (values, state rows, grads) randomised."""
    pair = _built(spec)
    pair.switch_to("base", backend="naive") if pair.active != "base" else None
    g = torch.Generator().manual_seed(seed)
    pair.arena.data.copy_(torch.randn(pair.arena.data.shape, generator=g))
    return pair


def reference_index(chunks, base_shape, motivated_shape):
    """Per dim, the motivated index of each base index: chunk c, position p -> c * (m/chunks) + p."""
    out = []
    for c, b, m in zip(chunks, base_shape, motivated_shape):
        bs, ms = b // c, m // c
        out.append(torch.tensor([(i // bs) * ms + i % bs for i in range(b)], dtype=torch.long))
    return torch.meshgrid(*out, indexing="ij") if out else ()


def tensors(pair, model):
    """Every (name, row) -> a clone of the tensor's bits, through the arena's views."""
    out = {}
    for (m, name), slot in pair.arena.slots.items():
        if m == model:
            rows = range(1 + pair.state_rows_copied) if slot.kind == "param" else [0]
            for row in rows:
                out[(name, row)] = pair.arena.view(slot, row).clone()
    return out


def expected_after(pair, up: bool, before_base, before_mot):
    """Independent reference: per-tensor advanced-index assignment from the map entries."""
    exp_base = {k: v.clone() for k, v in before_base.items()}
    exp_mot = {k: v.clone() for k, v in before_mot.items()}
    for e in pair.weights_map.entries:
        for (name, row), base_value in before_base.items():
            if name != e.base:
                continue
            mot_value = before_mot[(e.motivated, row)]
            idx = reference_index(e.chunks, base_value.shape, mot_value.shape)
            if up:
                exp_mot[(e.motivated, row)][idx] = base_value
            else:
                exp_base[(name, row)] = mot_value[idx] if idx else mot_value.clone()
    return exp_base, exp_mot


def assert_bits_equal(got: dict, expected: dict):
    for key, value in expected.items():
        a, b = got[key], value
        if a.is_floating_point():
            a, b = a.view(torch.int32) if a.element_size() == 4 else a, b.view(torch.int32) if b.element_size() == 4 else b
        assert torch.equal(a, b), f"{key} differs"


SPECS = list(PAIRS) + ["tiny"]


@pytest.mark.parametrize("backend", ["torch", "naive"])
@pytest.mark.parametrize("spec", SPECS)
def test_switch_matches_per_tensor_reference(spec, backend):
    pair = fresh(spec)
    before_base, before_mot = tensors(pair, "base"), tensors(pair, "motivated")
    ptrs = [t.data_ptr() for t in list(pair.base.parameters()) + list(pair.motivated.parameters())]
    grads = pair.arena.data[-1].clone()

    pair.switch_to("motivated", backend=backend)
    exp_base, exp_mot = expected_after(pair, True, before_base, before_mot)
    assert_bits_equal(tensors(pair, "base"), exp_base)      # base untouched
    assert_bits_equal(tensors(pair, "motivated"), exp_mot)  # mapped slices moved, differential kept

    # train the motivated model a little: every element changes, then switch back down
    pair.arena.data[:-1].add_(1.0)
    mid_base, mid_mot = tensors(pair, "base"), tensors(pair, "motivated")
    pair.switch_to("base", backend=backend)
    exp_base, exp_mot = expected_after(pair, False, mid_base, mid_mot)
    assert_bits_equal(tensors(pair, "base"), exp_base)      # base receives exactly its slices
    assert_bits_equal(tensors(pair, "motivated"), exp_mot)  # motivated keeps everything
    assert torch.equal(pair.arena.data[-1], grads)          # gradients are never copied
    assert ptrs == [t.data_ptr() for t in list(pair.base.parameters()) + list(pair.motivated.parameters())]


def _after_round_trip(spec, backend):
    pair = fresh(spec, seed=1)
    pair.switch_to("motivated", backend=backend)
    pair.arena.data[:-1].mul_(-2.0)
    up = pair.arena.data.clone()
    pair.switch_to("base", backend=backend)
    return up, pair.arena.data.clone()


@pytest.mark.parametrize("spec", ["tiny", "resnet20:resnet32", "vit_tiny_patch16_224:small"])
def test_backends_bitwise_identical(spec):
    results = {b: _after_round_trip(spec, b) for b in ("naive", "torch", "triton")}
    for backend in ("torch", "triton"):
        for got, ref in zip(results[backend], results["naive"]):
            assert torch.equal(got.view(torch.int32), ref.view(torch.int32)), backend


@pytest.mark.slow
def test_efficientnet_triton_matches_torch():
    up_t, down_t = _after_round_trip("efficientnet_b0:b1", "torch")
    up_k, down_k = _after_round_trip("efficientnet_b0:b1", "triton")
    assert torch.equal(up_t.view(torch.int32), up_k.view(torch.int32))
    assert torch.equal(down_t.view(torch.int32), down_k.view(torch.int32))


def test_vit_qkv_lands_per_head():
    pair = fresh("vit_tiny_patch16_224:vit_small_patch16_224")
    pair.switch_to("motivated")
    d_base, d_mot = 192, 384
    qkv_b, qkv_m = pair.base.blocks[0].attn.qkv.weight, pair.motivated.blocks[0].attn.qkv.weight
    for chunk in range(3):   # q, k, v: base rows land at the start of each motivated block
        assert torch.equal(qkv_m[chunk * d_mot: chunk * d_mot + d_base, :d_base],
                           qkv_b[chunk * d_base:(chunk + 1) * d_base])
    pair.switch_to("base")


def test_resnet_last_block_maps_to_last():
    pair = fresh("resnet20:resnet32")
    pair.switch_to("motivated")
    assert torch.equal(pair.motivated.layer2[4].conv1.weight, pair.base.layer2[2].conv1.weight)
    assert torch.equal(pair.motivated.layer2[1].conv1.weight, pair.base.layer2[1].conv1.weight)
    pair.switch_to("base")
    rules = pair.weights_map.describe(*[tensor_shapes(m)[0] for m in (pair.base, pair.motivated)])["entries_per_rule"]
    assert rules["last-to-last"] > 0 and rules["same-block"] > 0


def test_switched_models_compute_like_their_slices():
    """After a switch up, a motivated model with zeroed differential weights computes the base's function
    on the mapped channels (a functional check that the map is the right one for CIFAR ResNets)."""
    base = fm.families.cifar_resnet("resnet20", num_classes=10).eval()
    mot = fm.families.cifar_resnet("resnet32", num_classes=10).eval()
    pair = fm.MotivatedPair(base, mot, fm.families.get_family("cifar_resnet").weights_map(base, mot))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for j in (2, 3):   # identity blocks: zero their residual branch (bn2 weight and bias)
            for stage in (mot.layer1, mot.layer2, mot.layer3):
                stage[j].bn2.weight.zero_()
                stage[j].bn2.bias.zero_()
        pair.switch_to("motivated")
        assert torch.allclose(base(x), mot(x), atol=1e-5)
