"""An epoch's batches as the trainer consumes them: grouped into optimizer steps (``--grad-accum-steps``),
entered at any step (resume), and timed (the data time of each step)."""
from __future__ import annotations

import itertools
import time

from fastmotive.errors import ConfigError


def check_accumulation(batches: int, accum: int) -> None:
    """Refuse --grad-accum-steps above an epoch's batches: no optimizer step would be taken."""
    if batches < accum:
        raise ConfigError(f"--grad-accum-steps {accum} is more than the {batches} batches of an epoch: no "
                          "optimizer step would be taken")


def timed(batches):
    """(seconds spent waiting for it, item) for each item of `batches`: the data time of each step."""
    batches = iter(batches)
    while True:
        start = time.perf_counter()
        item = next(batches, None)
        if item is None:
            return
        yield time.perf_counter() - start, item


def optimizer_steps(loader, epoch: int, start_step: int, accum: int, steps: int):
    """The (images, labels) of each optimizer step of one epoch from `start_step`: a batch, or with `accum` > 1
    lists of `accum` consecutive batches (the position is in optimizer steps, so a resume lands on a group)."""
    batches = loader.epoch_batches(epoch, start_step * accum) if start_step * accum < len(loader) else iter(())
    if accum == 1:
        yield from itertools.islice(batches, steps - start_step)
        return
    for _ in range(start_step, steps):
        group = list(itertools.islice(batches, accum))
        yield [x for x, _ in group], [y for _, y in group]
