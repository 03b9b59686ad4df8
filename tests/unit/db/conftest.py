"""An embedded SQLite database, migrated, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.db import migrate
from services.db.session import create_db_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db' / 'cv.sqlite3'}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
