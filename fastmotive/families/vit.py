"""Vision Transformers (timm vit_tiny/small/base/large_patchP_S). Width: first entries on every dim (cls
token and position embedding on the last dim). The fused ``qkv`` projection packs [q; k; v] on dim 0,
so it is sliced per chunk: base head h lands on motivated head h of q, of k and of v. The input size fixes the
position embedding, so members are built for the data's ``img_size`` (``sized_input``)."""
import re

from ..errors import ConfigError
from ._registry import map_by_rule, register_family
from ._timm import create_timm, load_timm

SIZES = ["tiny", "small", "base", "large"]
MEMBERS = [f"vit_{s}_patch16_224" for s in SIZES]


def _chunking(name: str, ndim: int):
    if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):
        return (3,) + (1,) * (ndim - 1)
    return (1,) * ndim


def _rename(name: str):
    return name, ("qkv-chunks" if ".attn.qkv." in name else "leading")


def create_vit(name: str, *, img_size=None, **kwargs):
    """A timm ViT for `img_size` inputs; an input smaller than one patch is refused by name."""
    patch = int(re.search(r"patch(\d+)", name).group(1))
    if img_size is not None and img_size < patch:
        raise ConfigError(f"{name} cuts {patch}x{patch} patches: an input of {img_size} px holds none; use "
                          f"--img-size {patch} or more (the paper's ViTs see 224 px)")
    return create_timm(name, **({"img_size": img_size} if img_size is not None else {}), **kwargs)


@register_family("vit", pattern=r"vit_(?P<member>tiny|small|base|large)_patch\d+_\d+", members=MEMBERS,
                 build=create_vit, load=load_timm, sized_input=True)
def vit_map(base, motivated):
    return map_by_rule(base, motivated, "vit", rename=_rename, chunking=_chunking)
