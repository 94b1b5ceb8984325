"""`RunLock`: the ``.lock`` file that keeps a second training process out of a run directory."""
from __future__ import annotations

import os
from pathlib import Path

from fastmotive.errors import ConfigError


class RunLock:
    """``.lock`` in a run directory, holding the training process's PID: a second process is refused while
    the first lives; the lock of a process that died (kill -9, power loss) is stale and taken over."""

    def __init__(self, path: str | os.PathLike):
        self.file = Path(path) / ".lock"

    def check_free(self) -> None:
        """Raise ConfigError if another live process holds the lock (a stale one is ignored)."""
        owner = self._live_owner()
        if owner is not None and owner != os.getpid():
            self._refuse(owner)

    def _live_owner(self) -> int | None:
        owner = _lock_owner(self.file)
        return owner if owner is not None and _alive(owner) else None

    def _refuse(self, owner: int):
        raise ConfigError(f"{self.file.parent} is in use by another fastmotive process (PID {owner}); "
                          "wait for it, or use another --experiment") from None

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
                f.write(str(os.getpid()))
            return self
        raise ConfigError(f"could not lock {self.file.parent}: another process keeps creating {self.file.name}")

    def release(self) -> None:
        if _lock_owner(self.file) == os.getpid():
            self.file.unlink(missing_ok=True)


def _lock_owner(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, owned by someone else
        return True
    return True
