"""`RunLock`: the ``.lock`` file that keeps a second training process out of a run directory.

The lock holds ``HOST PID`` of the process that trains there. On this host a lock is stale, and taken over,
when its process is gone or runs neither fastmotive nor Python (its PID was reused: PID 1 after a restart).
A lock written on another host (a run directory on a shared filesystem) is never taken over: its process cannot
be seen from here, so the message names the host and what to do if that run is really gone. Locks written by
older versions hold the PID alone and are read as this host's.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from fastmotive.errors import ConfigError

HOST = socket.gethostname()


class RunLock:
    """``.lock`` in a run directory: a second process is refused while the first lives; the lock of a process
    that died (kill -9, power loss) is stale and taken over."""

    def __init__(self, path: str | os.PathLike):
        self.file = Path(path) / ".lock"

    def check_free(self) -> None:
        """Raise ConfigError if another live process holds the lock (a stale one is ignored)."""
        owner = self._live_owner()
        if owner is not None and owner != (HOST, os.getpid()):
            self._refuse(owner)

    def _live_owner(self) -> tuple[str, int] | None:
        owner = _lock_owner(self.file)
        return owner if owner is not None and _alive(*owner) else None

    def _refuse(self, owner: tuple[str, int]):
        host, pid = owner
        if host == HOST:
            raise ConfigError(f"{self.file.parent} is in use by another fastmotive process (PID {pid}); "
                              "wait for it, or use another --experiment") from None
        raise ConfigError(f"{self.file.parent} is in use by a fastmotive process on host {host} (PID {pid}), "
                          "which cannot be checked from here; wait for it, or, if that run is gone, delete "
                          f"{self.file} and resume") from None

    def acquire(self) -> RunLock:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):   # a stale lock is removed once, then created afresh
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._live_owner()
                if owner is not None:
                    self._refuse(owner)
                self.file.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{HOST} {os.getpid()}")
            return self
        raise ConfigError(f"could not lock {self.file.parent}: another process keeps creating {self.file.name}")

    def release(self) -> None:
        if _lock_owner(self.file) == (HOST, os.getpid()):
            self.file.unlink(missing_ok=True)


def _lock_owner(path: Path) -> tuple[str, int] | None:
    try:
        fields = path.read_text().split()
        return (HOST, int(fields[0])) if len(fields) == 1 else (fields[0], int(fields[1]))
    except (OSError, ValueError, IndexError):
        return None


def _alive(host: str, pid: int) -> bool:
    """Whether the lock's process may still be training: always, for another host's (it cannot be seen)."""
    if host != HOST or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, owned by someone else
        return True
    return _is_fastmotive(pid)


def _is_fastmotive(pid: int) -> bool:
    """Whether `pid` may be a fastmotive process: a fastmotive command or any Python (a user's own script
    drives the library); read from Linux's /proc, elsewhere assumed so."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"fastmotive" in command or b"python" in command
