"""`Distributed`: this process's place in a data-parallel job and every collective the trainer calls, each under
the process group's finite timeout (a dead, hung or diverging peer is a `DistributedError` naming the rank, the
operation and the step). `Distributed.single()` is a job of one: every method a no-op. See fastmotive.distributed.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from fastmotive.core.arena import as_bits
from fastmotive.errors import ConfigError, DistributedError
from fastmotive.training.calibration import batchnorm_layers

__all__ = ["BN_MODES", "DEFAULT_TIMEOUT_S", "TIMEOUT_ENV", "Agreement", "Distributed", "synced_view"]

DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_ENV = "FASTMOTIVE_DIST_TIMEOUT"
BN_MODES = ("reduce", "broadcast", "none")   # --dist-bn, timm's distribute_bn
_CODES = {"base": 0, "motivated": 1}         # the active model in agree()'s payload
_AGREE = 4                                   # float64 per rank in agree(): step, active code, loss, spare
_HASH_CHUNK = 1 << 20
_GOLDEN = -7046029254386353131               # 0x9E3779B97F4A7C15 as a signed int64: odd, so x -> x*w is a bijection


class Distributed:
    """One process of a data-parallel job (or the only one), with the collectives the trainer needs.

    Attributes:
        rank, world_size, local_rank: this process's place in the job (0, 1, 0 for a single process).
        device: where the small collective tensors live (cuda:<local_rank> under NCCL, else the CPU).
        timeout_s: every collective fails after this many seconds instead of waiting forever.
    Build it with `from_env()` (torchrun, `fastmotive train --nproc N`), `init()` (an explicit init method, as
    the tests do) or `single()`.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, *, backend: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, device: torch.device | str = "cpu"):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.backend, self.timeout_s, self.device = backend, timeout_s, torch.device(device)
        self.solo_group = None   # a process group of this rank alone (SyncBatchNorm calibration): convert_sync_bn

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, backend={self.backend})"

    # -- set-up ---------------------------------------------------------------------------------------
    @classmethod
    def single(cls) -> Distributed:
        """One process: no process group, every method a no-op."""
        return cls()

    @classmethod
    def from_env(cls, device: str | torch.device | None = None, *, timeout_s: float | None = None,
                 env: dict | None = None) -> Distributed:
        """Join the job torchrun (or `fastmotive.distributed.launch`) started, from RANK, WORLD_SIZE, LOCAL_RANK,
        MASTER_ADDR and MASTER_PORT; `single()` when WORLD_SIZE is unset or 1. `device` as in `device_for`."""
        env = os.environ if env is None else env
        world = int(env.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        rank = int(env["RANK"])
        return cls.init(rank, world, init_method="env://", local_rank=int(env.get("LOCAL_RANK", rank)),
                        device=device, timeout_s=timeout_s)

    @classmethod
    def init(cls, rank: int, world_size: int, *, init_method: str = "env://", local_rank: int | None = None,
             device: str | torch.device | None = None, timeout_s: float | None = None,
             backend: str | None = None) -> Distributed:
        """Initialise the default process group: NCCL for CUDA tensors (with gloo for CPU ones) when the run is
        on CUDA, gloo otherwise; every collective under `timeout_s` (default: $FASTMOTIVE_DIST_TIMEOUT or 600)."""
        if world_size <= 1:
            return cls.single()
        local_rank = rank if local_rank is None else local_rank
        timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)) if timeout_s is None else timeout_s
        probe = cls(rank, world_size, local_rank)
        run_device = probe.device_for(device)
        if run_device.type == "cuda":
            torch.cuda.set_device(run_device)
        backend = backend or ("cpu:gloo,cuda:nccl" if run_device.type == "cuda" else "gloo")
        try:
            dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                                    timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"rank {rank} could not join the {world_size}-process group ({init_method}) "
                                   f"within {timeout_s:g} s: {_first_line(exc)}") from exc
        collective = run_device if run_device.type == "cuda" else torch.device("cpu")
        return cls(rank, world_size, local_rank, backend=backend, timeout_s=timeout_s, device=collective)

    def close(self) -> None:
        """Leave the process group (at the end of a run; a no-op for one process)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def enabled(self) -> bool:
        """More than one process: the collectives do something."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def device_for(self, requested: str | torch.device | None = None) -> torch.device:
        """The device this rank trains on: cuda:<local_rank> when CUDA is asked for (or None/"auto" and CUDA is
        available), else the CPU. With several processes an explicit other GPU index is a ConfigError."""
        if requested in (None, "auto"):
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        if device.type != "cuda" or not self.enabled:
            return device
        if device.index is not None and device.index != self.local_rank:
            raise ConfigError(f"--device {device} with several processes: each process uses the GPU of its local "
                              f"rank (this one cuda:{self.local_rank}); pass --device cuda")
        if torch.cuda.device_count() <= self.local_rank:
            raise ConfigError(f"process {self.rank} has local rank {self.local_rank} but this machine has "
                              f"{torch.cuda.device_count()} GPU(s): start at most that many processes per machine")
        return torch.device("cuda", self.local_rank)

    def shard(self, n: int) -> range:
        """This rank's contiguous chunk of n items, [r*n//w, (r+1)*n//w): the validation split's rule."""
        return range(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    # -- the training step ----------------------------------------------------------------------------
    def average_gradients(self, grad: Tensor, step: int | None = None) -> Tensor:
        """Average `grad` (the active model's gradient segment, ``pair.segment(name).grad``) over ranks in place,
        in one all-reduce; returns it. Call after backward, after `agree`, before the optimizer step."""
        if self.enabled:
            with self._collective("the gradient all-reduce", step):
                dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            grad.div_(self.world_size)
        return grad

    def start_agree(self, loss: Tensor | float, active: str, step: int) -> Agreement:
        """Start `agree` without waiting (e.g. right after forward, to overlap it with backward)."""
        if active not in _CODES:
            raise ValueError(f"unknown model {active!r}; choices: {', '.join(_CODES)}")
        if not self.enabled:
            return Agreement(self, None, loss, active, step)
        mine = torch.zeros(_AGREE, dtype=torch.float64, device=self.device)
        mine[0], mine[1] = step, _CODES[active]
        mine[2] = loss.detach().to(self.device, torch.float64) if isinstance(loss, Tensor) else loss
        out = torch.empty(self.world_size * _AGREE, dtype=torch.float64, device=self.device)
        with self._collective("the step agreement", step):
            work = _all_gather(out, mine, async_op=True)
        return Agreement(self, work, out, active, step)

    def agree(self, loss: Tensor | float, active: str, step: int) -> float:
        """The loss averaged over ranks (the same float on every rank), after checking that every rank is at
        `step` training `active`; else DistributedError on every rank, naming the step and what differs.

        One all-gather of 4 float64 per rank: a sum (all-reduce) would give the mean loss but could not show
        that two ranks disagree; gathering the rows gives both, and every rank averages them in rank order, so
        the mean is bitwise the same everywhere. Call it before `average_gradients`: ranks training different
        models would otherwise all-reduce segments of different sizes."""
        return self.start_agree(loss, active, step).wait()

    def check_sync(self, data: Tensor, step: int, what: str = "the weights") -> None:
        """Raise DistributedError on every rank, naming `step` and the ranks that differ from rank 0, unless
        `data` (see `synced_view`) is bitwise the same on every rank. One all-gather of 3 int64 per rank: a
        position-weighted 64-bit hash of the bits (any single changed element changes it) and the float64 sum."""
        if not self.enabled:
            return
        total = data.detach().double().sum().reshape(1)
        mine = torch.cat([torch.tensor([step], dtype=torch.int64, device=data.device), _bit_hash(data).reshape(1),
                          total.view(torch.int64)]).to(self.device)
        out = torch.empty(self.world_size * 3, dtype=torch.int64, device=self.device)
        with self._collective(f"the check of {what}", step):
            _all_gather(out, mine)
        rows = out.view(self.world_size, 3).cpu()
        sums = rows[:, 2].clone().view(torch.float64).tolist()
        differ = [r for r in range(self.world_size) if not torch.equal(rows[r], rows[0])]
        if differ:
            detail = ", ".join(f"rank {r}: step {int(rows[r, 0])}, sum {sums[r]!r}" for r in [0, *differ])
            raise DistributedError(f"{what} differ across processes at step {step}: rank(s) "
                                   f"{', '.join(map(str, differ))} differ from rank 0 ({detail}). Something made "
                                   "the ranks diverge (a rank-dependent update, a non-deterministic kernel, "
                                   "bad memory); the job stops before it trains on")

    def agree_signal(self, signum: int, step: int | None = None) -> int:
        """The largest signal number any rank has received (0: none), the same on every rank: one all-reduce of
        one int64 on the CPU (gloo; no GPU sync), so that a stop requested on any rank stops every rank after the
        same step. The launcher signals each worker, but each reads the signal at its own point in a step."""
        if not self.enabled:
            return signum
        flag = torch.tensor([signum], dtype=torch.int64)
        with self._collective("the stop agreement", step):
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    # -- BatchNorm and small reductions ----------------------------------------------------------------
    def reduce_bn(self, modules: nn.Module | Iterable[nn.Module], mode: str = "reduce") -> None:
        """timm's ``distribute_bn``: every BatchNorm's running mean and variance averaged over ranks ("reduce")
        or taken from rank 0 ("broadcast"), in place (arena views stay bound), in one collective; "none" does
        nothing. Call on every rank before evaluation and checkpoints (--dist-bn)."""
        if mode not in BN_MODES:
            raise ConfigError(f"unknown --dist-bn mode {mode!r}; choices: {', '.join(BN_MODES)}")
        if not self.enabled or mode == "none":
            return
        modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        stats = [t for m in modules for bn in batchnorm_layers(m) for t in (bn.running_mean, bn.running_var)]
        if not stats:
            return
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in stats]).to(self.device)
        with self._collective(f"the BatchNorm {mode}"):
            if mode == "reduce":
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                flat.div_(self.world_size)
            else:
                dist.broadcast(flat, src=0)
        with torch.no_grad():
            for t, part in zip(stats, flat.split([t.numel() for t in stats])):
                t.copy_(part.view_as(t))

    def all_sum(self, values: Tensor, what: str = "a sum") -> Tensor:
        """`values` summed over ranks (a new tensor on values' device; `values` itself for one process)."""
        if not self.enabled:
            return values
        summed = values.detach().to(self.device, copy=True)
        with self._collective(what):
            dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed.to(values.device)

    def mean(self, value: float, what: str = "a mean") -> float:
        """`value` averaged over ranks, the same float on every rank (e.g. a condition's held-out loss, which
        each rank measures on its own validation shard)."""
        if not self.enabled:
            return value
        return self.all_sum(torch.tensor([float(value)], dtype=torch.float64), what).item() / self.world_size

    def broadcast_(self, tensor: Tensor, what: str = "a broadcast") -> Tensor:
        """Rank 0's values into `tensor` in place on every rank (e.g. ``pair.arena.data`` once at set-up, as DDP
        does, so every rank starts from the same weights however they were initialised)."""
        if self.enabled:
            staged = tensor if tensor.device == self.device or self.device.type == "cpu" else tensor.to(self.device)
            with self._collective(what):
                dist.broadcast(staged, src=0)
            if staged is not tensor:
                tensor.copy_(staged)
        return tensor

    def share(self, n: int) -> int:
        """This rank's part of n items split as evenly as possible (the parts add up to n)."""
        return len(self.shard(n))

    def gather_objects(self, obj, what: str = "a gather") -> list:
        """Every rank's `obj` (picklable), in rank order; ``[obj]`` for one process."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        with self._collective(what):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj, what: str = "a broadcast"):
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        with self._collective(what):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self, what: str = "a barrier") -> None:
        if self.enabled:
            with self._collective(what):
                dist.barrier()

    @contextlib.contextmanager
    def _collective(self, what: str, step: int | None = None):
        """Turn a failed or timed-out collective into one DistributedError naming the rank, the operation and
        the step."""
        try:
            yield
        except DistributedError:
            raise
        except RuntimeError as exc:   # DistBackendError, gloo's timeouts and closed connections
            at = f" at step {step}" if step is not None else ""
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what}{at} failed: {_first_line(exc)}. Another process "
                f"died, hung past the {self.timeout_s:g} s timeout (${TIMEOUT_ENV}) or took another code path; "
                "the job stops (checkpoints are written whole: the last one is intact)") from exc


class Agreement:
    """An `agree` in flight: `wait()` returns the mean loss, or raises DistributedError on a disagreement."""

    def __init__(self, group: Distributed, work, out, active: str, step: int):
        self.group, self.work, self.out, self.active, self.step = group, work, out, active, step

    def wait(self) -> float:
        g = self.group
        if self.work is None:   # one process: the loss as it is
            return float(self.out.detach()) if isinstance(self.out, Tensor) else float(self.out)
        with g._collective("the step agreement", self.step):
            self.work.wait()
        rows = self.out.view(g.world_size, _AGREE).tolist()
        if any(row[:2] != rows[0][:2] for row in rows):
            names = {code: name for name, code in _CODES.items()}
            detail = "; ".join(f"rank {r}: step {int(row[0])}, the {names.get(int(row[1]), '?')} model"
                               for r, row in enumerate(rows))
            raise DistributedError(
                f"processes disagree at step {self.step} (seen by rank {g.rank}): {detail}. Every rank must take "
                "the same decisions: conditions may only see the loss agree() averaged, and random conditions must "
                "draw from generators seeded alike on every rank")
        return sum(row[2] for row in rows) / g.world_size


def synced_view(pair, *, buffers: bool = False) -> Tensor:
    """The part of `pair`'s arena that must be bitwise equal on every rank, for `Distributed.check_sync`: the
    parameter columns on every row (values, optimizer state, gradients) of all members; with `buffers` (under
    --sync-bn, or right after `reduce_bn`) the whole arena, BatchNorm statistics included."""
    arena = pair.arena
    if buffers:
        return arena.data
    bounds = arena.segment_bounds.values()
    return arena.data[:, min(lo for lo, _ in bounds): max(hi for _, hi in bounds)]


def _bit_hash(data: Tensor) -> Tensor:
    """sum_i bits_i * w_i mod 2^64 with odd weights w_i: a single changed element always changes it."""
    bits = as_bits(data.detach()).reshape(-1)
    h = torch.zeros((), dtype=torch.int64, device=data.device)
    for lo in range(0, bits.numel(), _HASH_CHUNK):
        chunk = bits[lo: lo + _HASH_CHUNK].to(torch.int64)
        weights = torch.arange(lo, lo + chunk.numel(), dtype=torch.int64, device=data.device).mul_(_GOLDEN)
        h += chunk.mul_(weights.bitwise_or_(1)).sum()
    return h


# torch 2.14 renamed all_gather_into_tensor (deprecated there) to all_gather_single
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
