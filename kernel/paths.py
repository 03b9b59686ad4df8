"""Where the repository is: the default home of local state (``.data``) and of committed artifacts."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def display_path(path: Path | str) -> str:
    """``path`` relative to the repository when it is inside it (as reports and cards quote it), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
