"""Where the repository is (the default home of ``.data`` and of committed artifacts), and a file's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def display_path(path: Path | str) -> str:
    """``path`` relative to the repository when it is inside it (as reports and cards quote it), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (model files, weights and datasets are hundreds of MB).

    The one digest the model store, the importers, the training package and the dataset fetcher all compare.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
