"""Where a run's code came from: the git commit args.yaml records (None outside a checkout)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             check=False, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
