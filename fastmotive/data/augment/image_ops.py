"""Image ops of AutoAugment / RandAugment on a batch, each image with its own argument.

Every kernel takes float32 images [k, 3, H, W] with values in [0, 255] on any device and an argument per image
(a float tensor [k] on the same device) and returns new images in [0, 255]. The semantics are PIL's, as timm
applies them (``timm.data.auto_augment``): colour ops blend with a degenerate image (grey for Color, the mean
grey level for Contrast, black for Brightness, PIL's SMOOTH filter for Sharpness), Posterize keeps the top bits,
Solarize inverts values >= the threshold, AutoContrast stretches each channel to [0, 255], Equalize is PIL's
histogram equalization per channel; geometric ops are PIL affine maps (shears about the top-left corner,
rotation about the centre) sampled bilinearly, with a constant fill where the source point is outside the
image, all images of a layer in one ``grid_sample``. Unlike PIL nothing is rounded to uint8 between ops, except where the op is defined on
integer levels (Equalize's histogram; Posterize and Solarize compare exact values once the batch is rounded
on entry).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GREY = (0.299, 0.587, 0.114)  # PIL's RGB -> L weights (ITU-R 601-2 luma)


def _per_image(arg: torch.Tensor) -> torch.Tensor:
    return arg.view(-1, 1, 1, 1)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, x, factor)``: factor 1 keeps x, 0 gives the degenerate image."""
    return torch.lerp(degenerate.expand_as(x), x, _per_image(factor)).clamp_(0, 255)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma [k, 1, H, W]."""
    return GREY[0] * x[:, 0:1] + GREY[1] * x[:, 1:2] + GREY[2] * x[:, 2:3]


def color(x, factor):
    return _blend(grey(x), x, factor)


def contrast(x, factor):
    # PIL: a flat image at the mean grey level, rounded (ImageEnhance.Contrast)
    mean = torch.floor(grey(x).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return _blend(mean, x, factor)


def brightness(x, factor):
    return (x * _per_image(factor)).clamp_(0, 255)


def sharpness(x, factor):
    # PIL's degenerate image is ImageFilter.SMOOTH ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13), rounded, with the
    # border pixels left as they are. The 3x3 sum as two slice sums: several times a 1-channel conv2d on a CPU.
    if x.shape[-2] < 3 or x.shape[-1] < 3:
        return x.clone()
    rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = box.add_(x[:, :, 1:-1, 1:-1], alpha=4).div_(13).round_()
    return _blend(degenerate, x, factor)


def invert(x, _arg=None):
    return 255.0 - x


def posterize(x, bits):
    """Keep the top `bits` bits of each value (0: black, 8 or more: unchanged)."""
    step = torch.exp2(8.0 - _per_image(bits).clamp(0, 8))
    return torch.where(_per_image(bits) >= 8, x, torch.floor(x / step) * step)


def solarize(x, threshold):
    return torch.where(x >= _per_image(threshold), 255.0 - x, x)


def solarize_add(x, add):
    """timm's SolarizeAdd: values below 128 get `add` more, capped at 255."""
    return torch.where(x < 128, (x + _per_image(add)).clamp_(max=255), x)


def auto_contrast(x, _arg=None):
    """Each channel stretched to [0, 255]; a flat channel is left as it is (PIL's ImageOps.autocontrast)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_(min=1e-6)
    return torch.where(hi > lo, ((x - lo) * scale).clamp_(0, 255), x)


def equalize(x, _arg=None):
    """PIL's ImageOps.equalize per image and channel, all at once: a 256-bin histogram per channel, the LUT
    ``(cumsum_before(v) + step // 2) // step`` with ``step = (pixels - count of the top level) // 255``, and
    the channel unchanged where step is 0."""
    k, c, h, w = x.shape
    levels = x.round().clamp_(0, 255).long().view(k * c, h * w)
    hist = torch.zeros(k * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    top = hist.gather(1, levels.amax(dim=1, keepdim=True))
    step = (h * w - top) // 255
    before = hist.cumsum(1) - hist
    lut = ((before + step // 2) // step.clamp(min=1)).clamp_(max=255)
    out = lut.gather(1, levels).to(x.dtype).view(k, c, h, w)
    return torch.where((step > 0).view(k, c, 1, 1), out, x)


COLOR_KERNELS = {"color": color, "contrast": contrast, "brightness": brightness, "sharpness": sharpness,
                 "invert": invert, "posterize": posterize, "solarize": solarize, "solarize_add": solarize_add,
                 "auto_contrast": auto_contrast, "equalize": equalize}

# -- geometry -------------------------------------------------------------------------------------------------

AFFINE_KERNELS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def affine_matrices(kernel: str, arg: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Per-image 2x3 matrices [k, 2, 3] (float64, CPU) in PIL's convention: the source point of output point
    (x, y), in pixel units with the origin at the image's top-left corner, is ``A @ (x, y, 1)``."""
    h, w = hw
    m = torch.zeros(len(arg), 2, 3, dtype=torch.float64)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    if kernel == "shear_x":
        m[:, 0, 1] = arg
    elif kernel == "shear_y":
        m[:, 1, 0] = arg
    elif kernel == "translate_x":
        m[:, 0, 2] = arg
    elif kernel == "translate_y":
        m[:, 1, 2] = arg
    elif kernel == "rotate":  # PIL's Image.rotate: counter-clockwise degrees about (w / 2, h / 2)
        a = -arg * (math.pi / 180)
        cos, sin = torch.cos(a), torch.sin(a)
        cx, cy = w / 2, h / 2
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, sin, cx - cos * cx - sin * cy
        m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -sin, cos, cy + sin * cx - cos * cy
    else:
        raise ValueError(f"unknown affine kernel {kernel!r}")
    return m


def warp(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Apply per-image pixel-space affine maps (`affine_matrices`) as PIL does with bilinear resampling: an
    output pixel whose source point falls outside the image takes ``fill`` [3]; inside, bilinear interpolation
    with the edge pixels repeated."""
    k, _, h, w = x.shape
    # pixel -> grid_sample's [-1, 1] coordinates (align_corners=False: -1 and 1 are the outer pixel edges)
    to_unit = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64)
    from_unit = torch.linalg.inv(to_unit)
    full = torch.cat([matrices, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(k, 1, 3)], 1)
    theta = (to_unit @ full @ from_unit)[:, :2].to(x.device, torch.float32).view(k, 2, 3, 1, 1)
    # The grid of output pixel centres mapped through theta (affine_grid's result, without its batched matmul).
    u = ((torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    v = ((torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    gx = theta[:, 0, 0] * u + theta[:, 0, 1] * v + theta[:, 0, 2]
    gy = theta[:, 1, 0] * u + theta[:, 1, 1] * v + theta[:, 1, 2]
    out = F.grid_sample(x, torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border",
                        align_corners=False)
    outside = ((gx < -1) | (gx >= 1) | (gy < -1) | (gy >= 1)).unsqueeze(1)
    return torch.where(outside, fill.view(1, 3, 1, 1), out)
