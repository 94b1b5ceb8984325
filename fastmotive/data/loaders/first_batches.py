"""A loader cut to its first batches per epoch: the CPU budget of `--epoch-batches` / `--val-batches`."""
from __future__ import annotations

import itertools

from fastmotive.data.loaders.protocol import EpochLoader
from fastmotive.errors import ConfigError


class FirstBatches(EpochLoader):
    """The first `n` batches of each epoch of a fastmotive loader.

    On a training loader every epoch draws its own shuffled order, so an epoch is `n` random batches of the
    whole training set (a shortened epoch, not a fixed subset); on a validation loader (fixed order) it is
    always the same first `n` batches.
    """

    def __init__(self, loader, n: int):
        if n < 1:
            raise ConfigError(f"batches per epoch must be >= 1, got {n}")
        self.loader, self.n = loader, min(n, len(loader))

    def __len__(self) -> int:
        return self.n

    def epoch_batches(self, epoch: int, start_batch: int = 0):
        return itertools.islice(self.loader.epoch_batches(epoch, start_batch=start_batch), max(self.n - start_batch, 0))

    def __iter__(self):   # always the first epoch's batches: a validation budget reads the same ones each time
        return self.epoch_batches(0)
