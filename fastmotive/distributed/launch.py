"""``fastmotive train --nproc N``: N training processes on this machine, through torch.distributed's elastic launcher
(what ``torchrun --standalone --nproc_per_node=N -m fastmotive train ...`` does), with its exit code forwarded.

The launcher watches its workers: when one fails (an exception, a kill -9), it stops the others and
`launch` prints which rank failed and how, then returns that rank's status (128 + the signal number for a
signal). Checkpoints are written by rank 0 atomically, so the last one is intact whatever rank died.
"""
from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Sequence

__all__ = ["ENTRY", "check_process_count", "launch", "launched", "without_nproc"]

ENTRY = ("-m", "fastmotive", "train")   # what each worker runs: sys.executable ENTRY argv
_LAUNCH_ENV = "TORCHELASTIC_RUN_ID"      # set by torchrun and by the elastic agent in every worker


def launched() -> bool:
    """Whether this process is a worker that torchrun or `launch` started (then `--nproc` must not launch again)."""
    return _LAUNCH_ENV in os.environ or "LOCAL_RANK" in os.environ


def without_nproc(argv: Sequence[str]) -> list[str]:
    """`argv` less ``--nproc N`` / ``--nproc=N`` (the workers are started with the rest)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def device_of(argv: Sequence[str]) -> str:
    """The ``--device`` the workers will train on (what `Distributed.device_for` picks when it is absent)."""
    for i, arg in enumerate(argv):
        if arg == "--device" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--device="):
            return arg.split("=", 1)[1]
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_process_count(nproc: int, device: str) -> None:
    """Refuse more processes than the machine has GPUs (on CUDA) or cores (on a CPU), before any is started:
    999 processes on 2 cores fill the memory and freeze the machine."""
    import torch

    from fastmotive.errors import ConfigError
    on_cuda = device.startswith("cuda")
    limit = torch.cuda.device_count() if on_cuda else (os.cpu_count() or 1)
    if not 1 <= nproc <= limit:
        what = f"{limit} GPU{'s' * (limit != 1)}" if on_cuda else f"{limit} CPU core{'s' * (limit != 1)}"
        raise ConfigError(f"--nproc {nproc}: this machine has {what} for --device {device}; give at most {limit}")


def launch(argv: Sequence[str], nproc: int, *, entry: Sequence[str] = ENTRY, monitor_interval: float = 0.1) -> int:
    """Run ``python -m fastmotive train ARGV`` in `nproc` processes on this machine and wait for them.

    Args:
        argv: the train command's arguments (``--nproc`` is dropped).
        nproc: processes to start (one per GPU on a CUDA machine).
        entry: what each worker runs after the interpreter (tests run a small script instead).
        monitor_interval: seconds between the launcher's checks of its workers.
    Returns:
        0 when every rank succeeded; else the failed rank's exit status (128 + N for signal N), after one
        line on stderr naming the rank, its pid and how it ended.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_process_count(nproc, device_of(argv))
    # torchrun sets one thread per worker unless told otherwise; here the cores are shared out
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=monitor_interval)
    args = [*entry, *without_nproc(argv)]
    # the elastic agent installs its own SIGINT/SIGTERM handlers in this process and leaves them behind
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as exc:
        message, status = describe_failure(exc.failures, nproc)
        print(message, file=sys.stderr)
        return status
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0


def describe_failure(failures: dict, nproc: int) -> tuple[str, int]:
    """The message and exit status for the elastic launcher's failures ({rank: ProcessFailure}): the cause is
    the first rank to fail that the launcher did not stop itself (it stops the others with SIGTERM; timestamps
    are whole seconds), the others are named after it."""
    ordered = sorted(failures.items(), key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[1].timestamp,
                                                         item[0]))
    rank, first = ordered[0]
    others = "".join(f"; rank {r} {_how(f)}" for r, f in ordered[1:])
    message = (f"fastmotive train: rank {rank} of {nproc} (pid {first.pid}) {_how(first)}{others}; the launcher "
               "stopped the other processes. Checkpoints are written whole by rank 0: the last one is intact; "
               "continue with fastmotive train --resume RUN_DIR --nproc N")
    status = 128 - first.exitcode if first.exitcode < 0 else (first.exitcode or 1)
    return message, status


def _how(failure) -> str:
    if failure.exitcode < 0:
        try:
            name = signal.Signals(-failure.exitcode).name
        except ValueError:
            name = f"signal {-failure.exitcode}"
        return f"was killed by {name}"
    return f"exited with status {failure.exitcode}"
