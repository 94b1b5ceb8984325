"""Magnitude -> op argument, vectorised over the images that drew an op.

``TIMM_LEVELS`` is timm's ``LEVEL_TO_ARG`` (``timm.data.auto_augment``), one entry per timm op name, computed in
float64 as timm computes it in Python floats (tests compare every entry with timm's own function);
``TORCHVISION_LEVELS`` reads torchvision's AutoAugment magnitude bins (``_augmentation_space(10, (H, W))``).
Each entry is ``(kernel, level)``: the `image_ops` kernel that applies the op, and
``level(magnitude, sign, (H, W)) -> argument``, with ``sign`` the image's random +-1 where the op is signed
(timm's ``_randomly_negate``), None for ops without an argument.

Arguments are in the kernels' terms: blend factors, bits kept, thresholds, degrees, shear factors and
translations in pixels with PIL's sign (the source pixel of output x is x + t).
"""
from __future__ import annotations

from functools import lru_cache

import torch

LEVEL_DENOM = 10.0      # timm's _LEVEL_DENOM: magnitude 10 is the full range of an op
TRANSLATE_PCT = 0.45    # timm's default 'translate_pct' for the *Rel translations


def _frac(m):
    return m / LEVEL_DENOM


def _enhance(m, s, hw):  # [0.1, 1.9]
    return _frac(m) * 1.8 + 0.1


def _enhance_increasing(m, s, hw):  # 1 -+ up to 0.9, kept >= 0.1
    return torch.clamp(1.0 + s * _frac(m) * 0.9, min=0.1)


def _posterize(m, s, hw):  # bits kept: int(m / 10 * 4)
    return torch.floor(_frac(m) * 4)


def _solarize(m, s, hw):  # threshold: min(256, int(m / 10 * 256))
    return torch.clamp(torch.floor(_frac(m) * 256), max=256)


def _translate_abs(m, s, hw):
    # timm's create_transform sets translate_const = int(0.45 * img_size); pixels
    return s * _frac(m) * float(int(min(hw) * TRANSLATE_PCT))


TIMM_LEVELS = {
    "AutoContrast": ("auto_contrast", None),
    "Equalize": ("equalize", None),
    "Invert": ("invert", None),
    "Rotate": ("rotate", lambda m, s, hw: s * _frac(m) * 30.0),
    "Posterize": ("posterize", _posterize),
    "PosterizeIncreasing": ("posterize", lambda m, s, hw: 4 - _posterize(m, s, hw)),
    "PosterizeOriginal": ("posterize", lambda m, s, hw: _posterize(m, s, hw) + 4),
    "Solarize": ("solarize", _solarize),
    "SolarizeIncreasing": ("solarize", lambda m, s, hw: 256 - _solarize(m, s, hw)),
    "SolarizeAdd": ("solarize_add", lambda m, s, hw: torch.clamp(torch.floor(_frac(m) * 110), max=128)),
    "Color": ("color", _enhance),
    "ColorIncreasing": ("color", _enhance_increasing),
    "Contrast": ("contrast", _enhance),
    "ContrastIncreasing": ("contrast", _enhance_increasing),
    "Brightness": ("brightness", _enhance),
    "BrightnessIncreasing": ("brightness", _enhance_increasing),
    "Sharpness": ("sharpness", _enhance),
    "SharpnessIncreasing": ("sharpness", _enhance_increasing),
    "ShearX": ("shear_x", lambda m, s, hw: s * _frac(m) * 0.3),
    "ShearY": ("shear_y", lambda m, s, hw: s * _frac(m) * 0.3),
    "TranslateX": ("translate_x", _translate_abs),
    "TranslateY": ("translate_y", _translate_abs),
    "TranslateXRel": ("translate_x", lambda m, s, hw: s * _frac(m) * TRANSLATE_PCT * hw[1]),
    "TranslateYRel": ("translate_y", lambda m, s, hw: s * _frac(m) * TRANSLATE_PCT * hw[0]),
}


@lru_cache(maxsize=8)
def _torchvision_bins(hw: tuple[int, int]) -> dict:
    from torchvision.transforms import AutoAugment
    space = AutoAugment._augmentation_space(None, 10, hw)
    return {name: (mags.to(torch.float64), signed) for name, (mags, signed) in space.items()}


def _bins(name: str, then=lambda v: v):
    """torchvision's magnitude of bin ``m``, negated where drawn (``signed and sign == 0``), then `then`."""
    def level(m, s, hw):
        mags, signed = _torchvision_bins(tuple(hw))[name]
        v = mags[m.long()] if mags.ndim else torch.zeros_like(m)
        return then(v * s if signed else v)
    return level


TORCHVISION_LEVELS = {
    "AutoContrast": ("auto_contrast", None),
    "Equalize": ("equalize", None),
    "Invert": ("invert", None),
    "Rotate": ("rotate", _bins("Rotate")),
    "Posterize": ("posterize", _bins("Posterize")),
    "Solarize": ("solarize", _bins("Solarize")),
    "Color": ("color", _bins("Color", lambda v: 1.0 + v)),
    "Contrast": ("contrast", _bins("Contrast", lambda v: 1.0 + v)),
    "Brightness": ("brightness", _bins("Brightness", lambda v: 1.0 + v)),
    "Sharpness": ("sharpness", _bins("Sharpness", lambda v: 1.0 + v)),
    "ShearX": ("shear_x", _bins("ShearX")),
    "ShearY": ("shear_y", _bins("ShearY")),
    # torchvision moves the content by int(magnitude) pixels: the source of output x is x - int(magnitude)
    "TranslateX": ("translate_x", _bins("TranslateX", lambda v: -torch.trunc(v))),
    "TranslateY": ("translate_y", _bins("TranslateY", lambda v: -torch.trunc(v))),
}


def op_argument(family: str, name: str, magnitude: torch.Tensor, sign: torch.Tensor,
                hw: tuple[int, int]) -> tuple[str, torch.Tensor]:
    """(kernel, float64 argument per image) of op `name` of `family` ("timm" or "torchvision")."""
    kernel, level = (TIMM_LEVELS if family == "timm" else TORCHVISION_LEVELS)[name]
    if level is None:
        return kernel, torch.zeros_like(magnitude)
    return kernel, level(magnitude, sign, hw)
