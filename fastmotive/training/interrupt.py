"""Ctrl-C and SIGTERM (what schedulers and `timeout` send) during training: the first one asks the loop to stop
after the current batch (it then checkpoints, releases the run's lock and returns normally; the command exits
128 + the signal's number: 130 or 143); a second goes to the handler that was there before (Python's SIGINT
handler raises KeyboardInterrupt, SIGTERM's default ends the process)."""
from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """A context manager; `requested` turns True on the first SIGINT or SIGTERM received inside it, and
    `signum` says which."""

    def __init__(self):
        self.requested, self.signum = False, None
        self._previous: dict = {}

    def __enter__(self) -> StopOnSignal:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: only the main thread may set handlers; leave them alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested, self.signum = True, signum
        self._restore()

    def __exit__(self, *exc) -> None:
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
