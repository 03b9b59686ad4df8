"""A ``DATABASE_URL`` as SQLAlchemy wants it."""

from __future__ import annotations

from pathlib import Path


def sqlalchemy_database_url(database_url: str | None, data_dir: Path) -> str:
    """A ``DATABASE_URL`` as SQLAlchemy wants it: psycopg 3 for PostgreSQL, ``<data_dir>/cv.sqlite3`` when unset."""
    url = database_url or f"sqlite:///{data_dir / 'cv.sqlite3'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
