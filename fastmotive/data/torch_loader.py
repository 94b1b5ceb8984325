"""The `torch` loader: torchvision transforms per sample in a `torch.utils.data.DataLoader` (issue 4, baseline).

Worker processes decode (files) or slice (arrays) one sample at a time and the default collate stacks
them; pinned memory and a non-blocking copy move the batch to CUDA. The epoch plan (`_plan.py`) is the
batch sampler, so order and augmentation match the other loaders exactly: each sampler item is
``(index, dx, dy, flip)`` for arrays or ``(index, x0, y0, w, h, flip)`` for files.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torchvision.transforms.v2 import functional as F

from .epoch_plan import PAD, VAL_CROP_PCT, check_start, epoch_counter_iter, num_batches, plan_for
from .datasets import DAMAGED_INSIDE, ArraySplit, DataError, FileSplit


class _ArraySamples(torch.utils.data.Dataset):
    """Array samples with torchvision's pad, crop, flip, to_dtype and normalize, one sample at a time."""

    def __init__(self, split: ArraySplit, mean, std, train: bool):
        self.images, self.labels = split.images, split.labels
        self.mean, self.std, self.train = list(mean), list(std), train

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, item):
        i, dx, dy, flip = item
        img = torch.from_numpy(self.images[i])
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        if self.train:
            h, w = img.shape[1:]
            img = F.crop(F.pad(img, [PAD]), dy + PAD, dx + PAD, h, w)
            if flip:
                img = F.horizontal_flip(img)
        x = F.normalize(F.to_dtype(img, torch.float32, scale=True), self.mean, self.std)
        return x, int(self.labels[i])


class _FileSamples(torch.utils.data.Dataset):
    """Image files decoded with PIL: random-resized crop (relative box) + flip, or resize + centre crop."""

    def __init__(self, split: FileSplit, mean, std, train: bool, size: int):
        self.files, self.labels = split.files, split.labels
        self.mean, self.std, self.train, self.size = list(mean), list(std), train, size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, item):
        from PIL import Image

        i, x0, y0, bw, bh, flip = item
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {e}); {DAMAGED_INSIDE}") from e
        w, h = im.size
        s = self.size
        if self.train:  # crop the relative box and resize it to s x s in one resampling
            im = im.resize((s, s), Image.BILINEAR, box=(x0 * w, y0 * h, (x0 + bw) * w, (y0 + bh) * h))
            if flip:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            short = round(s / VAL_CROP_PCT)
            im = im.resize((max(short, round(w * short / h)), max(short, round(h * short / w))), Image.BILINEAR)
            left, top = (im.size[0] - s + 1) // 2, (im.size[1] - s + 1) // 2  # half up, as DALI's crop_pos 0.5
            im = im.crop((left, top, left + s, top + s))
        x = F.normalize(F.to_dtype(F.pil_to_tensor(im), torch.float32, scale=True), self.mean, self.std)
        return x, int(self.labels[i])


class _PlanSampler:
    """Batch sampler over an epoch plan, from batch ``start`` on; `TorchLoader` sets both before each pass.
    Items are built one batch at a time, so an ImageNet-sized epoch costs no per-sample Python objects."""

    def __init__(self, files: bool):
        self.plan, self.start, self.files = None, 0, files

    def __iter__(self):
        plan = self.plan
        for b in range(self.start, len(plan)):
            s = plan.batch(b)
            if plan.box is not None:
                yield list(zip(plan.index[s].tolist(), *plan.box[s].T.tolist(), plan.flip[s].tolist()))
            elif self.files:  # validation of files: no box
                yield [(i, 0.0, 0.0, 1.0, 1.0, False) for i in plan.index[s].tolist()]
            else:
                yield list(zip(plan.index[s].tolist(), plan.dx[s].tolist(), plan.dy[s].tolist(),
                               plan.flip[s].tolist()))

    def __len__(self):
        return len(self.plan) - self.start


class TorchLoader:
    """torchvision transforms in a DataLoader with ``num_workers`` workers; see the module docstring.

    Args:
        split: an `ArraySplit` (uint8 images) or a `FileSplit` (image files).
        batch_size, train, seed, flip, mean, std, device: as for `TensorLoader`.
        img_size: output side for files (arrays are already at size).
        num_workers: DataLoader worker processes (0: load in the main process).
    """
    name = "torch"

    def __init__(self, split: ArraySplit | FileSplit, *, batch_size: int, train: bool, seed: int, flip: bool,
                 mean, std, device: torch.device | str = "cpu", img_size: int | None = None,
                 num_workers: int = 2):
        self.device = torch.device(device)
        self.batch_size, self.train, self.seed, self.flip = batch_size, train, seed, flip
        self.dataset_size = len(split.labels)
        self.epoch = 0
        self._files = isinstance(split, FileSplit)
        dataset = (_FileSamples(split, mean, std, train, img_size) if self._files
                   else _ArraySamples(split, mean, std, train))
        self._sampler = _PlanSampler(self._files)
        pin = self.device.type == "cuda"
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._sampler, num_workers=num_workers, pin_memory=pin,
            persistent_workers=num_workers > 0,  # no worker start-up cost at every epoch
            prefetch_factor=4 if num_workers > 0 else None)  # 4 batches per worker in flight: rides out jitter

    def __len__(self) -> int:
        return num_batches(self.dataset_size, self.batch_size, self.train)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return epoch_counter_iter(self)

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch..`` of ``epoch``: float32 [B, 3, H, W] normalized, int64 [B], on the device."""
        check_start(start_batch, len(self))
        plan = plan_for(self.dataset_size, self.batch_size, self.train, self.seed, epoch, self.flip,
                        self._files)
        return self._batches(plan, start_batch)

    def _batches(self, plan, start_batch):
        if start_batch >= len(plan):
            return
        self._sampler.plan, self._sampler.start = plan, start_batch
        non_blocking = self.device.type == "cuda"
        for x, y in self._loader:
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)
