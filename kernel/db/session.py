"""The SQLAlchemy engine for a database URL: PostgreSQL over psycopg 3, or embedded SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import create_engine


def create_db_engine(url: str, *, connect_timeout_s: int = 3) -> Engine:
    """An engine that notices dead connections and never waits long for a new one.

    Args:
        url: A SQLAlchemy URL (``ServingSettings.sqlalchemy_url``); a PostgreSQL ``search_path``
            may ride in it as ``?options=-csearch_path%3Dmy_schema``.
        connect_timeout_s: How long to wait for PostgreSQL to accept a connection.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,  # a connection that died while the database was away is replaced, not used
        pool_size=2,
        max_overflow=2,
        connect_args={"connect_timeout": connect_timeout_s},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the log writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
