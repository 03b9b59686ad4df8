"""Where a report came from: the git commit of the working tree that made it."""

from __future__ import annotations

import subprocess


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the current directory, or None outside a repository (or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()
