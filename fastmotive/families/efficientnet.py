"""EfficientNet b0..b7 (timm). Width and depth: every dim maps to its first entries; in each stage base
block j maps to motivated block j, which timm's names (``blocks.{stage}.{j}``) already line up."""
from ._registry import map_by_rule, register_family
from ._timm import create_timm, load_timm

MEMBERS = [f"efficientnet_b{i}" for i in range(8)]


@register_family("efficientnet", pattern=r"efficientnet_(?P<member>b[0-7])", members=MEMBERS, build=create_timm,
                 load=load_timm)
def efficientnet_map(base, motivated):
    return map_by_rule(base, motivated, "efficientnet", rule="leading/same-block")
