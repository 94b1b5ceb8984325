"""EfficientNet b0..b7 (timm). Width and depth: every dim maps to its first entries; in each stage base
block j maps to motivated block j, which timm's names (``blocks.{stage}.{j}``) already line up."""
import timm

from ._registry import map_by_rule, register_family

MEMBERS = [f"efficientnet_b{i}" for i in range(8)]


def build(name: str, **kwargs):
    return timm.create_model(name, pretrained=False, **kwargs)


@register_family("efficientnet", pattern=r"efficientnet_(?P<member>b[0-7])", members=MEMBERS, build=build)
def efficientnet_map(base, motivated):
    return map_by_rule(base, motivated, "efficientnet", rule="leading/same-block")
