"""Where the repository is: the default home of local state (``.data``) and of committed artifacts."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
