"""Vision Transformers (timm vit_tiny/small/base/large_patchP_S). Width: first entries on every dim (cls
token and position embedding on the last dim). The fused ``qkv`` projection packs [q; k; v] on dim 0,
so it is sliced per chunk: base head h lands on motivated head h of q, of k and of v. The input size fixes the
position embedding, so members are built for the data's ``img_size`` (``sized_input``)."""
import re

from fastmotive.errors import ConfigError
from fastmotive.families._registry import map_by_rule, register_family
from fastmotive.families._timm import create_timm, load_timm

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


def identity_tensors(block) -> list[str]:
    """A block is x + attn(norm1(x)) then + mlp(norm2(.)): zero both branches' last step, the layer-scale
    gammas if the block has them, else ``attn.proj`` and ``mlp.fc2`` (weight and bias)."""
    names = dict(block.named_parameters())
    if "ls1.gamma" in names and "ls2.gamma" in names:
        return ["ls1.gamma", "ls2.gamma"]
    return [n for n in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias") if n in names]


def embedding_producers(model) -> dict[str, int]:
    """Every tensor that writes the residual stream, with its feature dim (growth's LayerNorm approximation)."""
    out = {"patch_embed.proj.weight": 0, "patch_embed.proj.bias": 0, "cls_token": -1, "reg_token": -1,
           "pos_embed": -1}
    for name, _ in model.named_parameters():
        if name.startswith("blocks.") and name.endswith(("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight",
                                                         "mlp.fc2.bias", "ls1.gamma", "ls2.gamma")):
            out[name] = 0
    return out


@register_family("vit", pattern=r"vit_(?P<member>tiny|small|base|large)_patch\d+_\d+", members=MEMBERS,
                 build=create_vit, load=load_timm, sized_input=True, block_skip=lambda block: True,
                 identity_tensors=identity_tensors, embedding_producers=embedding_producers)
def vit_map(base, motivated):
    return map_by_rule(base, motivated, "vit", rename=_rename, chunking=_chunking)
