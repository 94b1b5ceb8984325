"""The loader protocol: what fastmotive's loaders share, and the adapter that gives any other re-iterable of
batches the same face, applied once where batches enter the trainer or an evaluation."""
from __future__ import annotations

import itertools
from collections.abc import Iterator


class EpochLoader:
    """``len()`` batches per epoch; ``epoch_batches(epoch, start_batch)`` yields any epoch from any batch, the
    same batches every time (what resume and calibration rely on); ``iter()`` is the next epoch, whose counter
    advances after each full pass. Subclasses give `epoch_batches` and either a ``sampling`` (its length is
    the epoch's) or their own ``__len__``."""

    epoch = 0

    def __len__(self) -> int:
        return len(self.sampling)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        yield from self.epoch_batches(epoch)
        self.epoch = epoch + 1

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator:
        raise NotImplementedError


class PlainBatches(EpochLoader):
    """Any re-iterable of (images, labels) (a list, a torch DataLoader) as an EpochLoader: every epoch is one
    pass from its start, entered at `start_batch` by skipping the batches before it."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def epoch_batches(self, epoch: int, start_batch: int = 0) -> Iterator:
        return itertools.islice(iter(self.batches), start_batch, None)


def as_epoch_loader(batches) -> EpochLoader:
    """`batches` itself when it has the protocol's ``epoch_batches`` (fastmotive's loaders, or a user's own
    that follows it), else wrapped in `PlainBatches`: the one place that asks."""
    return batches if callable(getattr(batches, "epoch_batches", None)) else PlainBatches(batches)


def check_start(start_batch: int, total: int) -> None:
    if not 0 <= start_batch <= total:
        raise ValueError(f"start_batch={start_batch} is outside [0, {total}] (batches per epoch: {total})")
