"""The `tensor` loader: the whole uint8 dataset lives on the device; batches are a few tensor ops (issue 4).

The store is zero-padded once (4 pixels) and, when flipping, held twice: as is and mirrored, so a flipped
crop is a plain crop of the mirror. Seen as an overlapping strided view whose rows are every run of W
consecutive bytes, a batch of crops is B x 3 x H rows: one ``index_select`` reads the shuffled samples, their
crop windows and their flips (B x 3 x H x W bytes moved; no worker processes, no per-sample Python), and one
conversion and an in-place multiply-add go from uint8 to normalized float32. On a GPU this is airbench's `CifarLoader` idea; on a CPU it
is still several times the torch DataLoader (docs/data.md). Grayscale stores one channel and the gather
reads it three times. With ``img_size`` other than the stored side, each batch is resized on the device after
the crop (`resize.resize_batch`), so the store stays at the dataset's own size.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fastmotive.data.datasets.readers import ArraySplit
from fastmotive.data.loaders.epoch_plan import PAD, Sampling, flip_probability
from fastmotive.data.loaders.protocol import EpochLoader, check_start
from fastmotive.data.resize import resize_batch


class TensorLoader(EpochLoader):
    """Batches of an in-memory array split, built with tensor ops on ``device``.

    Args:
        split: uint8 images [N, C, H, W] (C = 1 or 3) and int64 labels.
        batch_size: images per batch.
        train: shuffle, augment and drop the last partial batch; else fixed order, no augmentation.
        seed: with the epoch, fixes order and augmentation.
        flip: probability of a horizontal flip (training only); True means 0.5, False 0.
        mean, std: per-channel normalization on the [0, 1] scale.
        device: where the dataset and the batches live.
        img_size: side of the output images (None: the stored size); resized per batch on the device.
        rank, world_size: this process's share of each global batch of ``batch_size * world_size`` (training)
            or of the validation set (`epoch_plan.Sampling`).
        aug_repeats: timm's repeated augmentation (0 off).
    """
    name = "tensor"
    aa = None  # device augmentation is the `augment.TrainAugment` wrapper's job

    def __init__(self, split: ArraySplit, *, batch_size: int, train: bool, seed: int, flip: bool | float,
                 mean, std, device: torch.device | str = "cpu", img_size: int | None = None, rank: int = 0,
                 world_size: int = 1, aug_repeats: int = 0):
        self.device = torch.device(device)
        flip = flip_probability(flip) if train else 0.0
        self.batch_size, self.train, self.seed, self.flip = batch_size, train, seed, flip
        self.mean, self.std, self.rank, self.world_size = tuple(mean), tuple(std), rank, world_size
        self.dataset_size = len(split.labels)
        self.sampling = Sampling(self.dataset_size, batch_size, train, seed, flip, False, repeats=aug_repeats,
                                 rank=rank, world_size=world_size)
        self.epoch = 0
        images = torch.from_numpy(split.images)
        n, c, h, w = images.shape
        self._pad = PAD if train else 0
        if self._pad:  # padded once here, so a batch is a single gather with no bounds checks
            images = torch.nn.functional.pad(images, (PAD,) * 4)
        self.img_size = img_size or h
        self._resize_to = img_size if img_size is not None and (img_size, img_size) != (h, w) else None
        if flip > 0:  # a mirrored copy: a flipped crop is a plain crop of the mirror image
            images = torch.stack([images, images.flip(-1)])
        images = images.to(self.device).contiguous()
        self._images = images  # keeps the storage of the view below alive
        # Every run of `w` consecutive bytes of the store, as rows of one (overlapping) strided view: a crop
        # is B x 3 x h such rows, so one index_select assembles the whole batch.
        flat = images.view(-1)
        self._runs = flat.as_strided((flat.numel() - w + 1, w), (1, 1))
        self._h, self._w = h, w
        self._sample_stride = c * (h + 2 * self._pad) * (w + 2 * self._pad)
        self._copy_stride = n * self._sample_stride
        self._labels = torch.from_numpy(split.labels).to(self.device)
        chan = torch.arange(3) if c == 3 else torch.zeros(3, dtype=torch.int64)  # grayscale: read 3 times
        row_stride = w + 2 * self._pad
        # Offset of row r of channel k inside a sample: [3, h].
        self._row_offsets = ((chan * (h + 2 * self._pad) * row_stride)[:, None]
                             + torch.arange(h) * row_stride).to(self.device)
        self._row_stride = row_stride
        # Normalization as one multiply-add: x * scale + bias = (x - 255 mean) / (255 std).
        scale = 1 / (torch.tensor(std, dtype=torch.float32) * 255)
        self._scale = scale.view(1, 3, 1, 1).to(self.device)
        self._bias = (-torch.tensor(mean, dtype=torch.float32) * 255 * scale).view(1, 3, 1, 1).to(self.device)



    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch..`` of ``epoch``: float32 [B, 3, H, W] normalized, int64 [B], on the device."""
        check_start(start_batch, len(self))
        batches = self._batches(self.sampling.epoch(epoch), start_batch)
        return ((self.normalize(x.float()), y) for x, y in batches)

    def pixel_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`epoch_batches` before the normalization: uint8 [B, 3, H, W]. The device auto-augmentation reads
        these, which spares it inverting the normalization."""
        check_start(start_batch, len(self))
        return self._batches(self.sampling.epoch(epoch), start_batch)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Float pixel levels (0-255) to the normalized batch, in place."""
        return x.mul_(self._scale).add_(self._bias)

    def _batches(self, plan, start_batch):
        dev = self.device
        first = start_batch * self.batch_size
        rows = plan.index[first:]
        flip = plan.flip[first:]
        # Start of each sample's crop window in the flat store; mirrored samples read the mirror copy, where
        # the window shifted by dx sits at (2 PAD - (dx + PAD)) from the left.
        col = np.where(flip, self._pad - plan.dx[first:], plan.dx[first:] + self._pad)
        base = (flip * self._copy_stride + rows * self._sample_stride
                + (plan.dy[first:] + self._pad) * self._row_stride + col)
        # One host-to-device copy of the epoch's plan; after that every op stays on the device.
        base = torch.from_numpy(base).to(dev)
        index = torch.from_numpy(rows).to(dev)
        for b in range(start_batch, len(plan)):
            s = plan.batch(b)
            s = slice(s.start - first, s.stop - first)
            starts = (base[s, None, None] + self._row_offsets).view(-1)    # [B * 3 * h] runs of w bytes
            x = self._runs.index_select(0, starts).view(-1, 3, self._h, self._w)
            if self._resize_to is not None:  # uint8 in, uint8 out, as a PIL resize
                x = resize_batch(x, self._resize_to)
            yield x, self._labels[index[s]]
