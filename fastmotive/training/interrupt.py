"""Ctrl-C and SIGTERM (what schedulers and `timeout` send) during training: the first one asks the loop to stop
after the current batch (it then checkpoints, releases the run's lock and returns normally; the command exits
128 + the signal's number: 130 or 143); a second goes to the handler that was there before (Python's SIGINT
handler raises KeyboardInterrupt, SIGTERM's default ends the process).

Several processes: the launcher (``--nproc``, torchrun) forwards the signal to every worker, and each reads it at
its own point in a step; `StopOnSignal.agreed` makes the decision one all ranks share (a small all-reduce), so
every rank stops after the same step and the checkpoint, a collective, is written. In a worker, repeats are
ignored: the launcher escalates itself (SIGKILL after its shutdown timeout), and a scheduler that signals every
process of a job, launcher included, would otherwise have each worker signalled twice and killed mid-write."""
from __future__ import annotations

import os
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """A context manager; a SIGINT or SIGTERM received inside it is pending until `agreed` is called, which turns
    `requested` True (on every rank of a job, when any rank received one) and `signum` says which."""

    def __init__(self):
        self.requested, self.signum = False, None
        self._received = 0   # this process's signal, not yet agreed
        self._previous: dict = {}

    def __enter__(self) -> StopOnSignal:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: only the main thread may set handlers; leave them alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self._received = self._received or signum
        if not _in_a_job():   # one process: a second signal forces
            self._restore()

    def agreed(self, dist, step: int | None = None) -> bool:
        """Whether to stop now; on several processes (`dist`, a `fastmotive.distributed.Distributed`) the same
        answer on every rank. Every rank must call it at the same points (each step)."""
        signum = dist.agree_signal(self._received, step)
        if signum:
            self.requested, self.signum = True, signum
        return self.requested

    def __exit__(self, *exc) -> None:
        # a worker that is stopping keeps ignoring signals: when its peers exit 130/143 first, the launcher takes
        # that for a failure and signals the rest, which would kill rank 0 while it writes the logs and the lock
        if not (self.requested and _in_a_job()):
            self._restore()

    @property
    def exit_status(self) -> int:
        """The shell's status for the signal that stopped the run (128 + its number), or 0."""
        return 128 + self.signum if self.signum is not None else 0

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            # None: the previous handler was not set from Python; Python's own is the sensible stand-in
            fallback = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, fallback if previous is None else previous)
        self._previous = {}


def _in_a_job() -> bool:
    """Whether this process is one worker of several (torchrun and ``--nproc`` set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
