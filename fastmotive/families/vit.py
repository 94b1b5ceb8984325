"""Vision Transformers (timm vit_tiny/small/base/large_patchP_S). Width: first entries on every dim (cls
token and position embedding on the last dim). The fused ``qkv`` projection packs [q; k; v] on dim 0,
so it is sliced per chunk: base head h lands on motivated head h of q, of k and of v."""
import timm

from ._registry import map_by_rule, register_family

SIZES = ["tiny", "small", "base", "large"]
MEMBERS = [f"vit_{s}_patch16_224" for s in SIZES]


def build(name: str, **kwargs):
    return timm.create_model(name, pretrained=False, **kwargs)


def _chunking(name: str, ndim: int):
    if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):
        return (3,) + (1,) * (ndim - 1)
    return (1,) * ndim


def _rename(name: str):
    return name, ("qkv-chunks" if ".attn.qkv." in name else "leading")


@register_family("vit", pattern=r"vit_(?P<member>tiny|small|base|large)_patch\d+_\d+", members=MEMBERS,
                 build=build)
def vit_map(base, motivated):
    return map_by_rule(base, motivated, "vit", rename=_rename, chunking=_chunking)
