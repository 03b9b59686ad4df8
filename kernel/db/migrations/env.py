"""Alembic environment: the tables come from kernel.db.tables; the connection from kernel.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import kernel.db.tables  # noqa: F401  (registers every table on SQLModel.metadata)
from kernel.db.session import create_db_engine

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    # Batch mode lets later migrations alter columns on SQLite (copy-and-move).
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # kernel.db.migrate passes one (with its search_path, in one transaction)
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    with create_db_engine(str(url)).begin() as new_connection:
        _run(new_connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
