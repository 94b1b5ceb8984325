"""Checkpoint files: atomic writes (a temporary file, fsync, then rename over the old one: timm's saver),
safe loads, and the RNG state they carry. What a pair saves and how it is checked: `MotivatedPair.state_dict`.

A failed write (full disk, crash, Ctrl-C) leaves the previous checkpoint intact; loading uses
``weights_only=True`` so a checkpoint can never run code.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from fastmotive.errors import CheckpointError


def save_atomic(state: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:   # torch reports a full disk as a RuntimeError from its writer
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"could not write the checkpoint {path}: {_write_failure(exc, path.parent)}; the "
                              "previous checkpoint, if any, is intact") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)   # make the rename itself durable
    finally:
        os.close(dir_fd)


def _write_failure(exc: BaseException, folder: Path) -> str:
    """The cause a user can act on: errno's text anywhere in the chain, or a full disk seen directly."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror
        exc = exc.__cause__ or exc.__context__
    try:
        if shutil.disk_usage(folder).free < 1 << 20:
            return "no space left on device"
    except OSError:
        pass
    return "the write failed"


def load(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a truncated or foreign file
        # the first line only: torch's advice to retry with weights_only=False would run what the file holds
        if "Weights only load failed" in str(exc):
            reason = "it holds Python objects beyond tensors and plain values, which fastmotive never unpickles"
        else:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not a fastmotive checkpoint ({reason}); it was not "
                              "loaded: a checkpoint holds only tensors and plain values") from None


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- several processes (fastmotive/distributed.py) -------------------------------------------------------------
def save_on_main(group, build_state, path: str | os.PathLike) -> None:
    """Write a checkpoint once for the whole job: rank 0 calls `build_state()` and writes it with `save_atomic`;
    every rank returns when it is on disk (the others wait in a broadcast that doubles as the barrier), or
    raises the same error when rank 0 failed (its own exception there, the same class elsewhere).

    Call on every rank. With several processes the state also gets ``rng_ranks`` (every rank's `rng_state()`,
    gathered, so each rank resumes its own dropout stream: `for_rank`) and ``world_size``. `group` is a
    `fastmotive.distributed.Distributed`; for a single process this is ``save_atomic(build_state(), path)``.
    """
    if not group.enabled:
        save_atomic(build_state(), path)
        return
    rngs = group.gather_objects(rng_state(), "the gathering of the RNG states for a checkpoint")
    failure, error = None, None
    if group.is_main:
        try:
            state = build_state()
            state.update(rng_ranks=rngs, world_size=group.world_size)
            save_atomic(state, path)
        except Exception as exc:   # every rank must hear of it, then rank 0 re-raises its own
            failure, error = (type(exc).__name__, str(exc)), exc
    failure = group.broadcast_object(failure, f"the checkpoint write of {path}")
    if error is not None:
        raise error
    if failure is not None:
        raise _rank0_error(*failure, path)


def _rank0_error(kind: str, message: str, path) -> Exception:
    """Rank 0's exception re-made on another rank: the same fastmotive error class, else CheckpointError."""
    from fastmotive import errors
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.FastmotiveError):
        return cls(message)
    return CheckpointError(f"rank 0 could not write the checkpoint {path}: {kind}: {message}")


def for_rank(saved: dict, rank: int, world_size: int) -> dict:
    """A loaded checkpoint as rank `rank` of `world_size` restores it: its own RNG state under ``rng`` when the
    checkpoint was written by a job of the same size (bitwise resume); otherwise rank 0's, as saved (a resume
    with another process count cannot continue every rank's dropout stream). Everything else is shared."""
    ranks = saved.get("rng_ranks")
    if ranks is None or len(ranks) != world_size or saved.get("world_size") != world_size:
        return saved
    return {**saved, "rng": ranks[rank]}
