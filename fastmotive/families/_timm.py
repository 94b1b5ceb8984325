"""timm members: the one create and load used by every timm family (efficientnet, resnet, vit)."""
from __future__ import annotations

import timm
from torch import nn


def create_timm(name: str, **kwargs) -> nn.Module:
    """A randomly initialised timm model (never downloads weights)."""
    return timm.create_model(name, pretrained=False, **kwargs)


def load_timm(name: str, path, *, num_classes: int, **kwargs) -> nn.Module:
    """A timm model with the weights of an exported safetensors file, through timm's own pretrained loader."""
    overlay = {"file": str(path), "num_classes": num_classes}   # num_classes: keep the trained head
    return timm.create_model(name, num_classes=num_classes, pretrained=True, pretrained_cfg_overlay=overlay,
                             **kwargs)
