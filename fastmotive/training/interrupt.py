"""Ctrl-C during training: the first SIGINT asks the loop to stop after the current batch (it then
checkpoints and returns normally); a second goes to the handler that was there before (Python's raises
KeyboardInterrupt)."""
from __future__ import annotations

import signal


class StopOnSigint:
    """A context manager; `requested` turns True on the first SIGINT received inside it."""

    def __init__(self):
        self.requested = False
        self._previous, self._installed = None, False

    def __enter__(self) -> StopOnSigint:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:   # not the main thread: only the main thread may set handlers; leave them alone
            pass
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._restored())

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._restored())

    def _restored(self):
        # None: the previous handler was not set from Python; Python's own is the sensible stand-in
        return signal.default_int_handler if self._previous is None else self._previous
