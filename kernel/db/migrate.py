"""Alembic, configured in code: upgrade, downgrade, the current revision, and drift from the tables.

``python -m services.db migrate`` runs :func:`upgrade`; the api runs it at start-up in local mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlmodel import SQLModel

import kernel.db.tables  # noqa: F401  (registers every table on SQLModel.metadata)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant: PostgreSQL serialises concurrent start-ups that migrate on this advisory lock.
_MIGRATION_LOCK = 0x63766170


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config with no ini file; migrations/env.py uses ``connection`` when given, else ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        url = connection.engine.url.render_as_string(hide_password=False)
        config.attributes["connection"] = connection
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), revision)


def upgrade_sql(url: str, revision: str = "head") -> None:
    """Print the SQL of the migrations up to ``revision`` for ``url``'s dialect, without connecting (for review)."""
    command.upgrade(alembic_config(url=url), revision, sql=True)


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` removes every table)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in migrations/versions."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def drift(engine: Engine) -> list[Any]:
    """Differences between the migrated database and the SQLModel tables (empty when in step)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))
