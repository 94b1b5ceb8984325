"""The `dali` loader: NVIDIA DALI pipelines, on the GPU with CUDA and CPU-only without (issue 4).

With CUDA, image files are decoded on the GPU (``fn.decoders.image_slice(device="mixed")``, nvJPEG) and the
crop, resize, flip and normalize run there; array data is fed from host memory and moved to the GPU before
``crop_mirror_normalize``. Without CUDA (or with ``device="cpu"``) the same graph is a CPU-only pipeline
(``device_id=None``) on ``num_threads`` DALI threads; CI runs that one.

All inputs enter through ``fn.external_source``: per batch the sample data (gathered uint8 arrays or the
encoded file bytes) and the augmentation parameters of the epoch plan (`epoch_plan.py`), so DALI's own random
generators are never used and every loader sees the same order, crops and flips.

A loader builds its pipeline once, on its first pass, and feeds it per pass: the external source reads the
batches of the pass in flight (`_Feed`), so a pass at (epoch, start_batch) gets exactly that epoch's batches from
that batch on. A pass that ends early (calibration reads a few batches; `--epoch-batches`) is drained when its
generator closes: the source stops, the at most ``_PREFETCH`` batches DALI prepared ahead are discarded, and the
pipeline is reset for the next pass. Passes that overlap each take their own pipeline; one that failed is
dropped, never reused.

The pipeline is driven with ``schedule_run`` / ``share_outputs``, not ``DALIGenericIterator``: the iterator's
``LastBatchPolicy.PARTIAL`` needs ``size`` or ``reader_name`` and is otherwise silently FILL. Here a batch is
exactly the source's batch: the plan's, the last validation batch partial, no sample padded or repeated.
Outputs become torch tensors through DLPack on the pipeline's device. Arrays resized with ``img_size`` leave the
pipeline as uint8 and are resized and normalized per batch on the device, as in the tensor loader.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np
import torch

from fastmotive.data.datasets.readers import DAMAGED_INSIDE, ArraySplit, DataError, FileSplit
from fastmotive.data.loaders.epoch_plan import (PAD, RRC_RATIO, RRC_SCALE, Sampling, flip_probability,
                                                val_resize)
from fastmotive.data.loaders.protocol import EpochLoader, check_start
from fastmotive.data.resize import resize_batch

_PREFETCH = 2  # batches DALI prepares ahead of the consumer


def dali_import_error() -> str | None:
    """None when NVIDIA DALI imports, else the reason (the `dali` loader is then unavailable)."""
    try:
        import nvidia.dali
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except (ImportError, OSError, RuntimeError) as e:  # OSError/RuntimeError: a broken wheel or CUDA libraries
        return f"{type(e).__name__}: {e}"
    return None


def dali_available() -> bool:
    return dali_import_error() is None


class DaliLoader(EpochLoader):
    """Batches from a DALI pipeline; see the module docstring.

    Args:
        split: an `ArraySplit` (uint8 images) or a `FileSplit` (JPEG/PNG files).
        batch_size, train, seed, flip, mean, std, device, rank, world_size, aug_repeats: as for
            `TensorLoader`. ``device`` cuda:k runs the pipeline on GPU k (mixed decoding); cpu runs a CPU-only
            pipeline.
        img_size: output side (files: the crop's size; arrays: resized after the crop; None: as stored).
        num_threads: DALI CPU threads.
        scale, ratio: random-resized-crop area and aspect-ratio ranges (files).

    Raises:
        DataError: DALI does not import, or a file fails to decode (naming the file).
    """
    name = "dali"
    aa = None  # device augmentation is the `augment.TrainAugment` wrapper's job

    def __init__(self, split: ArraySplit | FileSplit, *, batch_size: int, train: bool, seed: int,
                 flip: bool | float, mean, std, device: torch.device | str = "cpu", img_size: int | None = None,
                 num_threads: int = 2, rank: int = 0, world_size: int = 1, aug_repeats: int = 0,
                 scale=RRC_SCALE, ratio=RRC_RATIO):
        reason = dali_import_error()
        if reason is not None:
            raise DataError(f"loader 'dali' needs NVIDIA DALI (pip install nvidia-dali-cuda130), which does not "
                            f"import here ({reason}); use --loader tensor, torch or auto")
        self.device = torch.device(device)
        flip = flip_probability(flip) if train else 0.0
        self.batch_size, self.train, self.seed, self.flip = batch_size, train, seed, flip
        self.mean, self.std, self.rank, self.world_size = tuple(mean), tuple(std), rank, world_size
        self.dataset_size = len(split.labels)
        self._files = isinstance(split, FileSplit)
        self.sampling = Sampling(self.dataset_size, batch_size, train, seed, flip, self._files, tuple(scale),
                                 tuple(ratio), aug_repeats, rank, world_size)
        self.epoch = 0
        self._split = split
        self._mean = [m * 255 for m in mean]
        self._std = [s * 255 for s in std]
        stored = None if self._files else split.images.shape[2:]
        self.img_size = self._img_size = img_size or (None if self._files else stored[0])
        same = img_size is None or (not self._files and (img_size, img_size) == tuple(stored))
        self._resize_to = None if self._files or same else img_size
        scale = 1 / (torch.tensor(std, dtype=torch.float32) * 255)   # the tensor loader's normalization
        self._scale = scale.view(1, 3, 1, 1).to(self.device)
        self._bias = (-torch.tensor(mean, dtype=torch.float32) * 255 * scale).view(1, 3, 1, 1).to(self.device)
        self._num_threads = max(1, num_threads)
        if self.device.type == "cuda":
            self._device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        else:
            self._device_id = None  # a CPU-only pipeline: no CUDA context is ever created
        if not self._files:
            images = split.images
            if train:  # zero padding once, so the random crop is a plain window crop_pos * (2 PAD)
                images = np.pad(images, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
            self._images = np.ascontiguousarray(images)
            self._channels = split.images.shape[1]
            self._size = split.images.shape[2:]
        self._recent: collections.deque = collections.deque(maxlen=_PREFETCH + 2)  # file lists in flight
        self._idle: list = []  # (pipeline, feed) with no pass in flight: built once, reused by every pass

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch..`` of ``epoch``: float32 [B, 3, H, W] normalized, int64 [B], on the device."""
        check_start(start_batch, len(self))
        return self._batches(self.sampling.epoch(epoch), start_batch)

    # ----------------------------------------------------------------------------------------------------

    def _array_batch(self, plan, b):
        s = plan.batch(b)
        index = plan.index[s]
        span = 2 * PAD
        # The host side only gathers the samples (one numpy copy); DALI crops, flips and normalizes.
        return (self._images[index], ((plan.dx[s] + PAD) / span).astype(np.float32),
                ((plan.dy[s] + PAD) / span).astype(np.float32), plan.flip[s].astype(np.int32),
                self._split.labels[index])

    def _file_batch(self, plan, b):
        s = plan.batch(b)
        index = plan.index[s]
        names = [self._split.files[i] for i in index]
        self._recent.append(names)
        data = [np.fromfile(f, dtype=np.uint8) for f in names]
        if plan.box is None:  # validation: no augmentation parameters
            return data, self._split.labels[index]
        box = plan.box[s]
        return (data, np.ascontiguousarray(box[:, :2]), np.ascontiguousarray(box[:, 2:]),
                plan.flip[s].astype(np.int32), self._split.labels[index])

    def _pipeline(self, source):
        from nvidia.dali import fn, types
        from nvidia.dali.pipeline import Pipeline

        gpu = self._device_id is not None
        pipe = Pipeline(batch_size=self.batch_size, num_threads=self._num_threads, device_id=self._device_id,
                        seed=self.seed, prefetch_queue_depth=_PREFETCH, exec_dynamic=True)
        with pipe:
            if self._files:
                s = self._img_size
                decode_device = "mixed" if gpu else "cpu"
                if self.train:  # random-resized crop: decode only the box (ROI decoding), resize to s x s
                    enc, anchor, shape, mirror, labels = fn.external_source(
                        source=source, num_outputs=5, batch=True,
                        dtype=[types.UINT8, types.FLOAT, types.FLOAT, types.INT32, types.INT64])
                    img = fn.decoders.image_slice(enc, anchor, shape, device=decode_device, output_type=types.RGB)
                    img = fn.resize(img, size=(s, s))
                    x = fn.crop_mirror_normalize(img, mirror=mirror, mean=self._mean, std=self._std,
                                                 dtype=types.FLOAT, output_layout="CHW")
                else:  # shorter side to s / 0.875, centre crop s
                    enc, labels = fn.external_source(source=source, num_outputs=2, batch=True,
                                                     dtype=[types.UINT8, types.INT64])
                    img = fn.decoders.image(enc, device=decode_device, output_type=types.RGB)
                    img = fn.resize(img, resize_shorter=val_resize(s))
                    x = fn.crop_mirror_normalize(img, crop=(s, s), mean=self._mean, std=self._std,
                                                 dtype=types.FLOAT, output_layout="CHW")
            else:
                imgs, px, py, mirror, labels = fn.external_source(
                    source=source, num_outputs=5, batch=True, layout=["CHW", "", "", "", ""],
                    dtype=[types.UINT8, types.FLOAT, types.FLOAT, types.INT32, types.INT64])
                if gpu:
                    imgs = imgs.gpu()
                if self._channels == 1:  # grayscale to 3 channels (each normalized with its own mean/std)
                    imgs = fn.cat(imgs, imgs, imgs, axis_name="C")
                # Resized arrays leave as uint8: resized and normalized after the pipeline, as the tensor loader
                resized = self._resize_to is not None
                x = fn.crop_mirror_normalize(imgs, crop=tuple(self._size), crop_pos_x=px, crop_pos_y=py,
                                             mirror=mirror, mean=[0.0] * 3 if resized else self._mean,
                                             std=[1.0] * 3 if resized else self._std,
                                             dtype=types.UINT8 if resized else types.FLOAT, output_layout="CHW")
            pipe.set_outputs(x, labels)
        pipe.build()
        return pipe

    def _take_pipeline(self) -> tuple:
        """An idle (pipeline, feed), or a new one when none is idle (the first pass, or passes overlapping)."""
        if self._idle:
            return self._idle.pop()
        feed = _Feed()
        return self._pipeline(feed), feed

    def _batches(self, plan, start_batch):
        if start_batch >= len(plan):
            return
        make = self._file_batch if self._files else self._array_batch
        pipe, feed = self._take_pipeline()
        feed.batches = (make(plan, b) for b in range(start_batch, len(plan)))
        self._recent.clear()
        clean = False  # the pipeline can serve the next pass: this one ended, or was drained, without an error
        try:
            pipe.schedule_run()
            while (out := self._next_output(pipe)) is not None:
                yield self._to_torch(*out)
            clean = True
        except GeneratorExit:  # closed early: discard what DALI prepared ahead
            clean = _drain(pipe, feed)
            raise
        finally:  # after an error the pipeline's state is unknown: it is dropped, never reused
            if clean:
                pipe.reset()
                if not self._idle:  # one idle pipeline is enough; an overlapping pass's extra one is dropped
                    self._idle.append((pipe, feed))

    def _next_output(self, pipe):
        """The next (images, labels) as DALI tensors, or None at the end of the pass; the next run scheduled."""
        try:
            x, y = pipe.share_outputs()
        except StopIteration:
            return None
        except RuntimeError as e:
            if self._files:
                self._raise_decode_error(e)
            raise
        x, y = x.as_tensor(), y.as_tensor()
        pipe.release_outputs()  # the DLPack views stay valid (dynamic executor); the buffers go back to DALI
        pipe.schedule_run()
        return x, y

    def _to_torch(self, x, y):
        non_blocking = self.device.type == "cuda"
        x = _from_dali(x, self._device_id).to(self.device, non_blocking=non_blocking)
        if self._resize_to is not None:
            x = resize_batch(x, self._resize_to).float().mul_(self._scale).add_(self._bias)
        return x, _from_dali(y, self._device_id).to(self.device, non_blocking=non_blocking)

    def _raise_decode_error(self, err: RuntimeError):
        """DALI reports a failed decode without the file name: find it among the batches in flight."""
        from PIL import Image

        bad = []
        for names in self._recent:
            for f in names:
                try:
                    with Image.open(f) as im:
                        im.load()
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                    bad.append(f"{f}: {type(e).__name__}: {e}")
        if bad:
            raise DataError("cannot decode image(s) (DALI failed on a batch holding them): " + "; ".join(bad[:10])
                            + f"; {DAMAGED_INSIDE}") from err
        raise DataError(f"DALI failed on a batch of files {self._recent[-1][:5] if self._recent else []}...: "
                        f"{str(err).splitlines()[0] if str(err) else err!r}") from err


class _Feed:
    """The pipeline's external source: one call per batch of the pass in flight; StopIteration ends the pass."""

    def __init__(self):
        self.batches = iter(())

    def __call__(self):
        return next(self.batches)


def _drain(pipe, feed) -> bool:
    """Stop the source and discard the batches DALI prepared ahead; False when that fails (drop the pipeline)."""
    feed.batches = iter(())
    try:
        while True:
            pipe.share_outputs()
            pipe.release_outputs()
            pipe.schedule_run()
    except StopIteration:
        return True
    except Exception:  # a prefetched batch failed: the pipeline is not reused
        return False


def _from_dali(tensor, device_id: int | None) -> torch.Tensor:
    """A DALI tensor as a torch tensor sharing its memory (DLPack), on GPU ``device_id`` or the CPU."""
    if device_id is None:
        return torch.from_dlpack(tensor)
    with torch.cuda.device(device_id):
        return torch.from_dlpack(tensor)
