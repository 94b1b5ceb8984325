"""The `torch` loader: torchvision transforms per sample in a `torch.utils.data.DataLoader` (issue 4, baseline).

Worker processes decode (files) or slice (arrays) one sample at a time and the default collate stacks
them; pinned memory and a non-blocking copy move the batch to CUDA. The epoch plan (`epoch_plan.py`) is the
batch sampler, so order and augmentation match the other loaders exactly: each sampler item is
``(index, dx, dy, flip, seed)`` for arrays or ``(index, x0, y0, w, h, flip, seed)`` for files.

With ``aa`` (``--aa``), each training sample also goes through the PIL transform timm's ``create_transform``
builds (`AugmentPolicy.pil_transform`: timm's RandAugment / AutoAugment, torchvision's for ``cifar10``) in
the workers, after the crop and flip, as in timm's pipeline. Its global random generators are seeded per
sample from (seed, epoch, position in the epoch) and restored afterwards, so this too is reproducible, resumable
and the same for any number of workers or ranks. The device wrapper (`augment.AugmentedLoader`) then skips its
own auto-augmentation for this loader. Arrays resized with ``img_size`` are resized per sample in the
workers, after the crop and before the auto-augmentation (it must see the final size), with the tensor
loader's uint8 kernel (`resize.resize_batch`), so the two loaders give the same pixels.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from fastmotive.data.augment.policy import parse_policy
from fastmotive.data.datasets.readers import DAMAGED_INSIDE, ArraySplit, DataError, FileSplit
from fastmotive.data.loaders.epoch_plan import (PAD, RRC_RATIO, RRC_SCALE, Sampling, flip_probability,
                                                val_resize)
from fastmotive.data.loaders.protocol import EpochLoader, check_start
from fastmotive.data.resize import resize_batch
from fastmotive.data.rng import WORKER_AUGMENT, derive_seed, global_rngs_seeded, sample_seeds


class _Samples(torch.utils.data.Dataset):
    """What array and file samples share: the optional auto-augmentation and the final normalization."""

    def __init__(self, labels, mean, std, train: bool, aa: str | None, size: int):
        self.labels, self.mean, self.std, self.train = labels, list(mean), list(std), train
        policy = parse_policy(aa) if aa and train else None
        self.augment = policy.pil_transform(size, mean) if policy else None
        self._torch_rng = policy is not None and policy.family == "torchvision"  # torchvision draws from torch

    def __len__(self):
        return len(self.labels)

    def _auto_augment(self, im, seed: int):
        """`im` (PIL) through the auto-augmentation, its global generators seeded from the sample's seed (and
        restored afterwards in the main process, with ``num_workers=0``; a worker's are its own)."""
        in_worker = torch.utils.data.get_worker_info() is not None
        with global_rngs_seeded(seed, torch_cpu=self._torch_rng, restore=not in_worker):
            return self.augment(im)

    def _finish(self, img: torch.Tensor, i: int):
        x = F.normalize(F.to_dtype(img, torch.float32, scale=True), self.mean, self.std)
        return x, int(self.labels[i])


class _ArraySamples(_Samples):
    """Array samples with torchvision's pad, crop, flip, to_dtype and normalize, one sample at a time."""

    def __init__(self, split: ArraySplit, mean, std, train: bool, aa: str | None, size: int, resize: bool):
        super().__init__(split.labels, mean, std, train, aa, size)
        self.images, self.size, self.resize = split.images, size, resize

    def __getitem__(self, item):
        from PIL import Image

        i, dx, dy, flip, seed = item
        img = torch.from_numpy(self.images[i])
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        if self.train:
            h, w = img.shape[1:]
            img = F.crop(F.pad(img, [PAD]), dy + PAD, dx + PAD, h, w)
            if flip:
                img = F.horizontal_flip(img)
        if self.resize:
            img = resize_batch(img[None], self.size)[0]  # uint8, the tensor loader's resize
        if self.augment is not None:  # at the final size, on a uint8 PIL image as in timm
            im = self._auto_augment(Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())), seed)
            img = F.pil_to_tensor(im)
        return self._finish(img, i)


class _FileSamples(_Samples):
    """Image files decoded with PIL: random-resized crop (relative box) + flip, or resize + centre crop."""

    def __init__(self, split: FileSplit, mean, std, train: bool, aa: str | None, size: int):
        super().__init__(split.labels, mean, std, train, aa, size)
        self.files, self.size = split.files, size

    def __getitem__(self, item):
        from PIL import Image

        i, x0, y0, bw, bh, flip, seed = item
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
            if self.augment is not None:
                im = self._auto_augment(im, seed)
        else:
            short = val_resize(s)
            im = im.resize((max(short, round(w * short / h)), max(short, round(h * short / w))), Image.BILINEAR)
            left, top = (im.size[0] - s + 1) // 2, (im.size[1] - s + 1) // 2  # half up, as DALI's crop_pos 0.5
            im = im.crop((left, top, left + s, top + s))
        return self._finish(F.pil_to_tensor(im), i)


class _PlanSampler:
    """Batch sampler over an epoch plan, from batch ``start`` on; `TorchLoader` sets them before each pass.
    Items are built one batch at a time, so an ImageNet-sized epoch costs no per-sample Python objects. The
    last element of an item seeds the sample's auto-augmentation."""

    def __init__(self, files: bool, seed: int):
        self.plan, self.start, self.epoch, self.files, self.seed = None, 0, 0, files, seed

    def __iter__(self):
        plan = self.plan
        base = derive_seed(self.seed, self.epoch, WORKER_AUGMENT)
        for b in range(self.start, len(plan)):
            s = plan.batch(b)
            seeds = sample_seeds(base, plan.position[s]).tolist()
            if plan.box is not None:
                yield list(zip(plan.index[s].tolist(), *plan.box[s].T.tolist(), plan.flip[s].tolist(), seeds))
            elif self.files:  # validation of files: no box
                yield [(i, 0.0, 0.0, 1.0, 1.0, False, 0) for i in plan.index[s].tolist()]
            else:
                yield list(zip(plan.index[s].tolist(), plan.dx[s].tolist(), plan.dy[s].tolist(),
                               plan.flip[s].tolist(), seeds))

    def __len__(self):
        return len(self.plan) - self.start


class TorchLoader(EpochLoader):
    """torchvision transforms in a DataLoader with ``num_workers`` workers; see the module docstring.

    Args:
        split: an `ArraySplit` (uint8 images) or a `FileSplit` (image files).
        batch_size, train, seed, flip, mean, std, device, rank, world_size, aug_repeats: as for `TensorLoader`.
        img_size: output side (files: the crop's size; arrays: resized after the crop; None: as stored).
        num_workers: DataLoader worker processes (0: load in the main process).
        scale, ratio: random-resized-crop area and aspect-ratio ranges (files).
        aa: an ``--aa`` spec applied per training sample in the workers (timm's PIL transform), or None.
    """
    name = "torch"

    def __init__(self, split: ArraySplit | FileSplit, *, batch_size: int, train: bool, seed: int,
                 flip: bool | float, mean, std, device: torch.device | str = "cpu", img_size: int | None = None,
                 num_workers: int = 2, rank: int = 0, world_size: int = 1, aug_repeats: int = 0,
                 scale=RRC_SCALE, ratio=RRC_RATIO, aa: str | None = None):
        self.device = torch.device(device)
        flip = flip_probability(flip) if train else 0.0
        self.batch_size, self.train, self.seed, self.flip = batch_size, train, seed, flip
        self.mean, self.std, self.rank, self.world_size = tuple(mean), tuple(std), rank, world_size
        self.aa = aa if train else None
        self.dataset_size = len(split.labels)
        self._files = isinstance(split, FileSplit)
        self.sampling = Sampling(self.dataset_size, batch_size, train, seed, flip, self._files, tuple(scale),
                                 tuple(ratio), aug_repeats, rank, world_size)
        self.epoch = 0
        stored = None if self._files else split.images.shape[2:]
        self.img_size = img_size or (None if self._files else stored[0])
        resize = not self._files and img_size is not None and (img_size, img_size) != tuple(stored)
        dataset = (_FileSamples(split, mean, std, train, self.aa, self.img_size) if self._files
                   else _ArraySamples(split, mean, std, train, self.aa, self.img_size, resize))
        self._sampler = _PlanSampler(self._files, seed)
        pin = self.device.type == "cuda"
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._sampler, num_workers=num_workers, pin_memory=pin,
            persistent_workers=num_workers > 0,  # no worker start-up cost at every epoch
            prefetch_factor=4 if num_workers > 0 else None,  # 4 batches per worker in flight: rides out jitter
            generator=torch.Generator().manual_seed(seed))  # its worker seeds, not drawn from torch's global RNG



    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch..`` of ``epoch``: float32 [B, 3, S, S] normalized, int64 [B], on the device."""
        check_start(start_batch, len(self))
        return self._batches(self.sampling.epoch(epoch), epoch, start_batch)

    def _batches(self, plan, epoch, start_batch):
        if start_batch >= len(plan):
            return
        self._sampler.plan, self._sampler.start, self._sampler.epoch = plan, start_batch, epoch
        non_blocking = self.device.type == "cuda"
        for x, y in self._loader:
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)
