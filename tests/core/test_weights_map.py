"""Weights maps: family rules, JSON round trip, describe(), and the errors on pairs that do not nest."""
import pytest
from torch import nn

import fastmotive as fm
from fastmotive.families import parse_arch, tensor_shapes


@pytest.mark.parametrize("spec,base,motivated,family", [
    ("efficientnet_b0:b2", "efficientnet_b0", "efficientnet_b2", "efficientnet"),
    ("efficientnet_b0:efficientnet_b1", "efficientnet_b0", "efficientnet_b1", "efficientnet"),
    ("resnet20:resnet32", "resnet20", "resnet32", "cifar_resnet"),
    ("resnet20:56", "resnet20", "resnet56", "cifar_resnet"),
    ("resnet18:34", "resnet18", "resnet34", "resnet"),
    ("vit_tiny_patch16_224:vit_small_patch16_224", "vit_tiny_patch16_224", "vit_small_patch16_224", "vit"),
    ("vit_tiny_patch16_224:small", "vit_tiny_patch16_224", "vit_small_patch16_224", "vit"),
])
def test_parse_arch(spec, base, motivated, family):
    fam, b, m = parse_arch(spec)
    assert (fam.name, b, m) == (family, base, motivated)


@pytest.mark.parametrize("spec", ["efficientnet_b0:", "efficientnet_b9", "foo:bar", "efficientnet_b0:b9", ":b2", "a:b:c",
                                  "resnet20:resnet34x"])
def test_bad_arch_spec_lists_families_and_syntax(spec):
    with pytest.raises(fm.ArchSpecError) as err:
        parse_arch(spec)
    msg = str(err.value)
    assert spec.split(":")[0] in msg or spec in msg
    assert "BASE:MOTIVATED" in msg or "members" in msg
    assert "efficientnet" in msg


def test_reversed_pair_names_each_tensor():
    with pytest.raises(fm.WeightsMapError) as err:
        fm.MotivatedPair.from_names("efficientnet_b2", "efficientnet_b0", num_classes=10)
    msg = str(err.value)
    assert "conv_head.weight" in msg and "base size 1408 > motivated size 1280" in msg
    assert "blocks.6.1" in msg   # b2 has blocks b0 lacks: they have no place


def test_basic_vs_bottleneck_does_not_nest():
    with pytest.raises(fm.WeightsMapError) as err:
        fm.MotivatedPair.from_arch("resnet34:resnet50", num_classes=10)
    assert "layer1.0.conv1.weight" in str(err.value)


def test_different_num_classes_is_named():
    base = fm.families.cifar_resnet("resnet20", num_classes=100)
    mot = fm.families.cifar_resnet("resnet32", num_classes=10)
    with pytest.raises(fm.WeightsMapError, match=r"fc\.weight.*dim 0: base size 100 > motivated size 10"):
        fm.MotivatedPair(base, mot, fm.families.get_family("cifar_resnet").weights_map(base, mot))


def test_inferred_map_for_any_nested_pair_and_json_round_trip():
    base = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    mot = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Linear(16, 3), nn.Linear(3, 3))
    pair = fm.MotivatedPair(base, mot)
    wmap = pair.weights_map
    assert {e.base for e in wmap.entries} == set(tensor_shapes(base)[0])
    assert set(wmap.differential) == {"3.weight", "3.bias"}
    assert fm.WeightsMap.from_json(wmap.to_json()) == wmap
    info = pair.describe()
    assert info["tensors_mapped"] == len(tensor_shapes(base)[0])
    assert info["elements_mapped"] == sum(t.numel() for t in list(base.parameters()) + list(base.buffers()))
    assert info["differential_elements"] == info["motivated_elements"] - info["elements_mapped"]


def test_inferred_map_rejects_unknown_base_tensor():
    base = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    mot = nn.Sequential(nn.Linear(4, 16))
    with pytest.raises(fm.WeightsMapError, match=r"'1.weight' \(3, 8\) -> '1.weight': no such tensor"):
        fm.MotivatedPair(base, mot)


def test_efficientnet_plan_size():
    pair = fm.MotivatedPair.from_arch("efficientnet_b0:b2", num_classes=1000)
    info = pair.describe()
    # design.md: about 21.6 k contiguous runs for b0:b2 at 1000 classes, about 5.3 M mapped elements
    assert 15_000 < info["runs"] < 30_000
    assert 5.0e6 < info["elements_mapped"] < 5.6e6


def test_family_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        fm.families.register_family("vit", pattern="x(?P<member>y)", members=[], build=None)(lambda b, m: None)


def test_efficientnet_blocks_map_same_index():
    pair = fm.MotivatedPair.from_arch("efficientnet_b0:b1", num_classes=10)
    targets = {e.base: e.motivated for e in pair.weights_map.entries}
    assert targets["blocks.1.1.conv_pw.weight"] == "blocks.1.1.conv_pw.weight"
    assert "blocks.1.2.conv_pw.weight" in pair.weights_map.differential   # b1 has one more block in stage 1


def test_one_model_name_is_a_single_model_spec():
    family, base, motivated = parse_arch("resnet50")
    assert (family.name, base, motivated) == ("resnet", "resnet50", None)
