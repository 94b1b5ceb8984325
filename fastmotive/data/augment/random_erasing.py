"""Random erasing on a normalized batch on its device (``--reprob``, ``--remode``, ``--recount``).

timm's ``RandomErasing`` semantics (``timm.data.random_erasing``, the defaults timm's train.py uses): each image
is erased with probability ``prob``; it gets ``count`` boxes (``count`` = 1, or uniform in [1, max_count]);
each box tries up to 10 times to draw an area fraction uniform in [0.02, 1/3] (divided by ``count``) and a
log-uniform aspect ratio in [0.3, 1/0.3], giving ``h = round(sqrt(area * ratio))``,
``w = round(sqrt(area / ratio))``; the first attempt that fits strictly inside the image is placed uniformly.
The box is filled with 0 (``const``: the mean colour after normalization), one normal draw per channel
(``rand``) or one per pixel (``pixel``).

The geometry of a whole (global) batch is drawn at once from a numpy generator (`draw_boxes`), so a rank of a
distributed run can take its rows; the fill of each image comes from a generator seeded by its row in the
global batch, so it does not depend on the rank either. Only the boxes' pixels are generated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

MIN_AREA, MAX_AREA, MIN_ASPECT, ATTEMPTS = 0.02, 1 / 3, 0.3, 10
MODES = ("const", "rand", "pixel")


@dataclass(frozen=True)
class EraseBoxes:
    """The boxes of a batch: per box its image ``row``, ``top``, ``left``, ``height``, ``width`` (int arrays)."""
    row: np.ndarray
    top: np.ndarray
    left: np.ndarray
    height: np.ndarray
    width: np.ndarray

    def rows(self, lo: int, hi: int) -> EraseBoxes:
        """The boxes of images ``lo..hi-1``, renumbered from 0."""
        keep = (self.row >= lo) & (self.row < hi)
        return EraseBoxes(self.row[keep] - lo, self.top[keep], self.left[keep], self.height[keep],
                          self.width[keep])


def draw_boxes(rng: np.random.Generator, n: int, hw: tuple[int, int], prob: float,
               max_count: int = 1) -> EraseBoxes:
    """The erased boxes of `n` images of size `hw`, in image order (an image's boxes in drawing order)."""
    h_img, w_img = hw
    erase = rng.random(n) < prob
    count = np.ones(n, np.int64) if max_count == 1 else rng.integers(1, max_count + 1, n)
    shape = (n, max_count, ATTEMPTS)
    area = rng.uniform(MIN_AREA, MAX_AREA, shape) * (h_img * w_img) / count[:, None, None]
    ratio = np.exp(rng.uniform(math.log(MIN_ASPECT), math.log(1 / MIN_ASPECT), shape))
    h = np.round(np.sqrt(area * ratio)).astype(np.int64)  # round half to even, as Python's round
    w = np.round(np.sqrt(area / ratio)).astype(np.int64)
    fits = (w < w_img) & (h < h_img)
    first = fits.argmax(axis=2)[..., None]                 # the first attempt that fits
    h, w = np.take_along_axis(h, first, 2)[..., 0], np.take_along_axis(w, first, 2)[..., 0]
    place = rng.random((2, n, max_count))
    top = np.floor(place[0] * (h_img - h + 1)).astype(np.int64)
    left = np.floor(place[1] * (w_img - w + 1)).astype(np.int64)
    used = erase[:, None] & (np.arange(max_count) < count[:, None]) & fits.any(axis=2)
    row, box = np.nonzero(used)
    return EraseBoxes(row, top[row, box], left[row, box], h[row, box], w[row, box])


def erase(x: torch.Tensor, boxes: EraseBoxes, mode: str, generators) -> torch.Tensor:
    """Fill `boxes` of the normalized batch `x` in place; ``generators(row)`` gives the torch generator (on x's
    device) of an image's fill. Returns `x`."""
    if mode not in MODES:
        raise ValueError(f"random erasing mode {mode!r}: expected one of {', '.join(MODES)}")
    c = x.shape[1]
    last_row, g = -1, None
    for row, top, left, h, w in zip(boxes.row.tolist(), boxes.top.tolist(), boxes.left.tolist(),
                                    boxes.height.tolist(), boxes.width.tolist()):
        if mode == "const":
            x[row, :, top:top + h, left:left + w] = 0
            continue
        if row != last_row:
            last_row, g = row, generators(row)
        size = (c, h, w) if mode == "pixel" else (c, 1, 1)
        x[row, :, top:top + h, left:left + w] = torch.randn(size, generator=g, device=x.device, dtype=x.dtype)
    return x
