"""EfficientNet b0..b7 (timm). Width and depth: every dim maps to its first entries; in each stage base
block j maps to motivated block j, which timm's names (``blocks.{stage}.{j}``) already line up."""
from fastmotive.families._registry import map_by_rule, register_family
from fastmotive.families._timm import create_timm, load_timm

MEMBERS = [f"efficientnet_b{i}" for i in range(8)]
# Dropout before the classifier per member (Tan & Le 2019, as in timm's `_gen_efficientnet` table) and the
# drop-connect (stochastic depth) rate 0.2 they all trained with: what `--drop auto --drop-path auto` give.
DROPOUT = {f"efficientnet_b{i}": rate for i, rate in enumerate((0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5))}
DROP_PATH = 0.2


def published_rates(name: str) -> tuple[float, float]:
    return DROPOUT[name], DROP_PATH


def block_skip(block) -> bool | None:
    """timm's blocks skip only at stride 1 with in == out channels (and not ``noskip``): their ``has_skip``."""
    return getattr(block, "has_skip", None)


def identity_tensors(block) -> list[str]:
    """The block's last BN before the skip add: ``bn3`` (InvertedResidual) or ``bn2`` (DepthwiseSeparableConv)."""
    last = "bn3" if hasattr(block, "bn3") else "bn2"
    return [f"{last}.weight", f"{last}.bias"]


@register_family("efficientnet", pattern=r"efficientnet_(?P<member>b[0-7])", members=MEMBERS, build=create_timm,
                 load=load_timm, rates=published_rates, block_skip=block_skip, identity_tensors=identity_tensors,
                 channels_last=True)
def efficientnet_map(base, motivated):
    return map_by_rule(base, motivated, "efficientnet", rule="leading/same-block")
