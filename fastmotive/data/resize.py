"""Resizing array images: per batch on the device (``--img-size`` for array datasets), or a whole set at once."""
from __future__ import annotations

import numpy as np
import torch


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] to [B, C, size, size], bilinear (half-pixel centres, as PIL and DALI; antialiased when
    shrinking, which changes nothing when enlarging), on x's device; contiguous NCHW out.

    The loaders call it after the crop, so CIFAR at 224 px costs 224 x 224 pixels per image in flight, not a
    resized copy of the whole set (7.5 GB of uint8 at 224, twice that with the tensor loader's mirror copy).
    uint8 in, uint8 out (rounded, as a PIL resize): on the CPU through torch's vectorised uint8 kernel, which
    wants channels-last and is about 20x the float kernel there."""
    if x.shape[-2:] == (size, size):
        return x
    if x.dtype == torch.uint8 and x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
        return _interpolate(x, size).contiguous()
    if x.dtype == torch.uint8:
        return _interpolate(x.float(), size).round_().clamp_(0, 255).to(torch.uint8)
    return _interpolate(x, size)


def _interpolate(x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                           antialias=True)


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Resize uint8 [N, C, H, W] to [N, C, size, size], bilinear with antialiasing, in chunks (tune-k's folds)."""
    out = np.empty((len(images), images.shape[1], size, size), np.uint8)
    for lo in range(0, len(images), chunk):
        x = torch.from_numpy(images[lo:lo + chunk]).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True)
        out[lo:lo + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
