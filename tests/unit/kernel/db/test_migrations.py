"""Migrations: up, down, in step with the tables, and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from kernel.db import migrate
from kernel.db.session import create_db_engine
from services.config import get_settings
from services.db.__main__ import main

TABLES = {"inference_log", "batch_job", "batch_job_item", "api_key", "experiment", "feedback"}


def test_upgrade_creates_every_table_at_head(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_migrations_match_the_tables(engine: Engine) -> None:
    assert migrate.drift(engine) == []


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate.downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_upgrade_twice_is_a_no_op(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_command_line_migrates_the_configured_database(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["current"]) == 0
    assert "at None" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert f"at {migrate.head_revision()}" in capsys.readouterr().out
    assert main(["check"]) == 0
    engine = create_db_engine(get_settings().sqlalchemy_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert main(["downgrade", "base"]) == 0
    assert "at None" in capsys.readouterr().out
    assert main(["check"]) == 1  # the tables are gone: everything differs
    assert (data_dir / "cv.sqlite3").is_file()


def test_sql_prints_postgresql_ddl_without_connecting(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://cv@127.0.0.1:1/cv")  # nothing listens there
    get_settings.cache_clear()
    assert main(["sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE inference_log" in out and "JSONB" in out and "BIGSERIAL" in out


def test_alembic_env_can_connect_from_a_url(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    command.upgrade(migrate.alembic_config(url=url), "head")
    assert migrate.current_revision(create_db_engine(url)) == migrate.head_revision()
