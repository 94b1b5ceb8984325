"""timm ImageNet ResNets of one block type: resnet18:34 (basic blocks), resnet50:101:152 (bottlenecks).

Depth rule (paper, Sec. 3): in each stage, base blocks 1..l-1 map to motivated blocks 1..l-1 and the
last base block maps to the last motivated block; stem and head map one to one. Mixing block types
(resnet34:resnet50) does not nest, and the map says which tensors fail.
"""
import re

from fastmotive.families._registry import map_by_rule, register_family
from fastmotive.families._timm import create_timm, load_timm

MEMBERS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
_BLOCK = re.compile(r"(?P<stage>layer\d+)\.(?P<block>\d+)\.(?P<rest>.*)")


def last_to_last(base, motivated):
    """Rename function: ``layerS.j.*`` -> same j, except the base's last block -> the motivated's last."""
    def rename(name):
        m = _BLOCK.fullmatch(name)
        if m is None:
            return name, "one-to-one"
        stage, j = m["stage"], int(m["block"])
        base_depth, motivated_depth = len(getattr(base, stage)), len(getattr(motivated, stage))
        if j == base_depth - 1:
            return f"{stage}.{motivated_depth - 1}.{m['rest']}", "last-to-last"
        return name, "same-block"
    return rename


def block_skip(block) -> bool:
    """A timm ResNet block adds its input back unchanged unless it has a ``downsample`` projection."""
    return block.downsample is None


def identity_tensors(block) -> list[str]:
    """The residual branch's last BN (timm's ``zero_init_last`` one): ``bn3`` (Bottleneck) or ``bn2`` (BasicBlock).
    The ReLU after the add then sees the previous block's (non-negative) output: the block is the identity."""
    last = "bn3" if hasattr(block, "bn3") else "bn2"
    return [f"{last}.weight", f"{last}.bias"]


@register_family("resnet", pattern=r"resnet(?P<member>18|34|50|101|152)", members=MEMBERS, build=create_timm,
                 load=load_timm, block_skip=block_skip, identity_tensors=identity_tensors)
def resnet_map(base, motivated):
    return map_by_rule(base, motivated, "resnet", rename=last_to_last(base, motivated))
