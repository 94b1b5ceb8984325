"""The user cache: results that depend only on their inputs, kept between runs so a second run on the same
data or model does not pay for them again (the image-folder check, fvcore's FLOPs count).

Where: ``$FASTMOTIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastmotive``, else ``~/.cache/fastmotive``;
``FASTMOTIVE_CACHE_DIR=off`` (or empty) turns it off. Each table is one small JSON file, rewritten whole
through a temporary file and a rename, so a reader never sees half a file; two runs that write at once lose
one entry, which the next run recomputes. A cache that cannot be read or written (a read-only home, a damaged
file) is ignored: the result is computed as if it had never been cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

OFF = ("", "off", "0", "none")
MAX_ENTRIES = 256   # per table: old entries go first (a key re-remembered moves to the end)


def cache_dir() -> Path | None:
    """The cache folder (not created here), or None when the cache is off."""
    own = os.environ.get("FASTMOTIVE_CACHE_DIR")
    if own is not None:
        return None if own.strip().lower() in OFF else Path(own).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastmotive"


def fingerprint(*parts) -> str:
    """A key from the parts' text (sha256): what a cached value depends on, versions included."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


def lookup(table: str, key: str):
    """The value remembered under `key` in `table`, or None."""
    return _read(table).get(key)


def remember(table: str, key: str, value) -> None:
    """Keep `value` (JSON-serializable) under `key` in `table`; silently nothing when the cache is off or not
    writable."""
    folder = cache_dir()
    if folder is None:
        return
    entries = _read(table)
    entries.pop(key, None)
    entries[key] = value
    entries = dict(list(entries.items())[-MAX_ENTRIES:])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{table}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, folder / f"{table}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def _read(table: str) -> dict:
    folder = cache_dir()
    if folder is None:
        return {}
    try:
        entries = json.loads((folder / f"{table}.json").read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
