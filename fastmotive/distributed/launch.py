"""``fastmotive train --nproc N``: N training processes on this machine, through torch.distributed's elastic launcher
(what ``torchrun --standalone --nproc_per_node=N -m fastmotive train ...`` does), with its exit code forwarded.

The launcher watches its workers: when one fails (an exception, a kill -9), it stops the others and
`launch` prints which rank failed and how, then returns that rank's status (128 + the signal number for a
signal). Checkpoints are written by rank 0 atomically, so the last one is intact whatever rank died.

SIGINT and SIGTERM to the launcher: the elastic agent forwards the signal to every worker, which stop at one
step agreed by all ranks, checkpoint and exit 130 / 143 (`fastmotive.training.interrupt`); the launcher waits
for them (`SHUTDOWN_TIMEOUT_S`, then SIGKILL) and exits with the same status. A kill -9 of the launcher (or of
torchrun) takes its workers with it: each worker asks the kernel for a SIGKILL when its parent dies
(`die_with_launcher`).
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ENTRY", "SHUTDOWN_TIMEOUT_S", "check_process_count", "die_with_launcher", "launch", "launched",
           "say_error", "stderr_once_per_job", "without_nproc"]

# What each worker runs: sys.executable ENTRY argv, that is ``python -m fastmotive train ARGV`` with one change: a
# SIGINT during the imports and set-up (before training handles it) ends the worker quietly with status 130
# instead of a KeyboardInterrupt traceback from every process.
ENTRY = ("-c", "import runpy, signal, sys; signal.signal(signal.SIGINT, lambda *_: sys.exit(130)); "
               "runpy.run_module('fastmotive', run_name='__main__', alter_sys=True)", "train")
_LAUNCH_ENV = "TORCHELASTIC_RUN_ID"      # set by torchrun and by the elastic agent in every worker
_LAUNCHER_PID_ENV = "FASTMOTIVE_LAUNCHER_PID"   # `launch` tells its workers who their parent must be
# after forwarding SIGINT/SIGTERM, seconds the workers get to finish a step (an epoch's evaluation at worst) and
# checkpoint before they are SIGKILLed; torch's own default, 30 s, is short for a large model on a CPU
SHUTDOWN_TIMEOUT_S = 120
_PR_SET_PDEATHSIG = 1                    # <linux/prctl.h>
# a rank's statuses that say it printed why itself: a one-line error (2), stopped by a signal and checkpointed
_SAID = (2, 128 + signal.SIGINT, 128 + signal.SIGTERM)
_QUIET_S = 10.0   # how long a rank other than 0 waits before printing its error: the ranks start seconds apart


def launched() -> bool:
    """Whether this process is a worker that torchrun or `launch` started (then `--nproc` must not launch again)."""
    return _LAUNCH_ENV in os.environ or "LOCAL_RANK" in os.environ


def die_with_launcher() -> None:
    """In a worker: end this process with SIGKILL when the process that started it dies, so a kill -9 of the
    launcher (``fastmotive train --nproc``, torchrun) leaves no orphan training on, holding the run's lock.

    The elastic agent starts every worker itself (``subprocess.Popen`` from its main thread; numactl, when it
    binds NUMA nodes, execs the worker in place), so the parent is the launcher. On Linux the kernel sends the
    signal (``prctl(PR_SET_PDEATHSIG)``, which fires when the thread that started the worker ends: the agent's
    main thread); elsewhere a daemon thread polls the parent PID every second. A launcher that died before
    this call (the worker already adopted) ends the worker at once."""
    parent = int(os.environ.get(_LAUNCHER_PID_ENV) or os.getppid())
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent,), name="fastmotive-launcher-watch", daemon=True).start()
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _parent_death_signal(sig: int) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


def say_error(line: str) -> None:
    """Print a one-line error once per job, not once per process. Alone, or as rank 0: printed at once. Another
    rank prints it only if still alive after `_QUIET_S`: the launcher stops every worker as soon as one fails, so
    when rank 0 failed too (a settings error fails on every rank) its line is the only one, and an error of that
    rank alone is still seen. In a worker the line also goes to the elastic agent's error file
    ($TORCHELASTIC_ERROR_FILE): torchrun's failure summary then quotes it instead of advice on tracebacks."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE") if launched() else None
    if error_file:
        with contextlib.suppress(OSError):
            record = {"message": line, "extraInfo": {"timestamp": str(int(time.time()))}}   # torch's format
            Path(error_file).write_text(json.dumps({"message": record}))
    if _another_rank():
        time.sleep(_QUIET_S)
    print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stderr_once_per_job():
    """On a worker other than rank 0, hold what is written to stderr inside the block and write it only after
    `_QUIET_S`, as `say_error` does (argparse prints its errors itself); elsewhere, nothing changes."""
    if not _another_rank():
        yield
        return
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    finally:
        if held.getvalue():
            time.sleep(_QUIET_S)
            sys.stderr.write(held.getvalue())


def _another_rank() -> bool:
    return launched() and int(os.environ.get("RANK", "0")) != 0


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


def launch(argv: Sequence[str], nproc: int, *, entry: Sequence[str] = ENTRY, monitor_interval: float = 0.1,
           run_dir: str = "RUN_DIR") -> int:
    """Run ``python -m fastmotive train ARGV`` in `nproc` processes on this machine and wait for them.

    Args:
        argv: the train command's arguments (``--nproc`` is dropped).
        nproc: processes to start (one per GPU on a CUDA machine).
        entry: what each worker runs after the interpreter (tests run a small script instead).
        monitor_interval: seconds between the launcher's checks of its workers.
        run_dir: the run's directory, for the advice after a failure.
    Returns:
        0 when every rank succeeded; 128 + N when this process got signal N (SIGINT, SIGTERM: forwarded to the
        workers, which checkpoint and stop); else the failed rank's exit status (128 + N for signal N), after one
        line on stderr naming the rank, its pid and how it ended (none for status 2, 130 or 143: that rank
        printed its one-line error, or where it stopped on a signal).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_process_count(nproc, device_of(argv))
    # torchrun sets one thread per worker unless told otherwise; here the cores are shared out
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    shutdown = int(os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_S))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=monitor_interval, shutdown_timeout=shutdown)
    args = [*entry, *without_nproc(argv)]
    # the elastic agent installs its own SIGINT/SIGTERM handlers in this process and leaves them behind
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    os.environ[_LAUNCHER_PID_ENV] = str(os.getpid())   # the workers copy the environment when started
    try:
        elastic_launch(config, sys.executable)(*args)
    except SignalException as exc:   # the workers were sent the same signal and have checkpointed (or were killed)
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        message, status = describe_failure(exc.failures, nproc, run_dir)
        if status not in _SAID:
            print(message, file=sys.stderr)
        return status
    finally:
        os.environ.pop(_LAUNCHER_PID_ENV, None)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0


def describe_failure(failures: dict, nproc: int, run_dir: str = "RUN_DIR") -> tuple[str, int]:
    """The message and exit status for the elastic launcher's failures ({rank: ProcessFailure}): the cause is
    the first rank to fail that the launcher did not stop itself (it stops the others with SIGTERM; timestamps
    are whole seconds), the others are named after it."""
    ordered = sorted(failures.items(), key=lambda item: (item[1].exitcode == -signal.SIGTERM, item[1].timestamp,
                                                         item[0]))
    rank, first = ordered[0]
    others = "".join(f"; rank {r} {_how(f)}" for r, f in ordered[1:])
    message = (f"fastmotive train: rank {rank} of {nproc} (pid {first.pid}) {_how(first)}{others}; the launcher "
               "stopped the other processes. Checkpoints are written whole by rank 0: the last one is intact; "
               f"continue with fastmotive train --resume {run_dir} --nproc {nproc}")
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
