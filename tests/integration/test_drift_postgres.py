"""The drift monitor on a real PostgreSQL (a fresh schema per test): JSONB features, the index, stored checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from kernel.db import migrate
from kernel.db.session import create_db_engine
from kernel.db.tables import DriftCheck, InferenceLog
from services.drift.monitor import DriftMonitor, DriftPolicy
from tests.integration.test_inference_log_postgres import direct_url
from tests.unit.services.drift.logged import bright, dark, log_rows, save_reference

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_engine(pg_schema: str, postgres_endpoint: tuple[str, int]) -> Iterator[Engine]:
    engine = create_db_engine(direct_url(postgres_endpoint, pg_schema))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def monitor(pg_engine: Engine, tmp_path: Path) -> DriftMonitor:
    policy = DriftPolicy(window=40, alpha=0.01, min_rows=30, permutations=100, reference_dir=tmp_path)
    return DriftMonitor(pg_engine, policy, models=("classifier", "detector"))


def test_features_are_jsonb_and_a_row_without_them_is_sql_null(pg_engine: Engine) -> None:
    rows = bright(2)
    log_rows(pg_engine, [rows[0], None, rows[1]])
    with Session(pg_engine) as session:
        assert session.exec(text("SELECT count(*) FROM inference_log WHERE features IS NULL")).one()[0] == 1  # type: ignore[call-overload]
        kinds = session.exec(text("SELECT DISTINCT jsonb_typeof(features) FROM inference_log")).all()  # type: ignore[call-overload]
        assert sorted(k[0] or "" for k in kinds) == ["", "object"]
        stored = session.exec(select(InferenceLog.features).where(col(InferenceLog.features).is_not(None))).all()
    assert sorted(stored, key=str) == sorted(rows, key=str)  # what request_features made, as it made it


def test_the_latest_rows_of_a_model_come_from_its_index(pg_engine: Engine) -> None:
    log_rows(pg_engine, bright(5))
    with pg_engine.connect() as connection:
        connection.execute(text("SET enable_seqscan = off"))  # a five-row table would be scanned whole
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                text(
                    "EXPLAIN SELECT version, features FROM inference_log WHERE model = 'classifier' AND status = 200"
                    " AND features IS NOT NULL ORDER BY created_at DESC LIMIT 100"
                )
            )
        )
    assert "Index Scan Backward using ix_inference_log_model_created_at" in plan, plan


def test_checks_run_store_and_export_on_postgres(monitor: DriftMonitor, pg_engine: Engine, tmp_path: Path) -> None:
    same = bright(40)
    save_reference(tmp_path, same)
    save_reference(tmp_path, bright(40), model="detector")
    log_rows(pg_engine, same)
    log_rows(pg_engine, dark(40), model="detector")
    stored = monitor.check_all()
    assert [(s.model, s.n, s.verdict) for s in stored] == [("classifier", 40, "no_drift"), ("detector", 40, "drift")]
    with Session(pg_engine) as session:
        rows = session.exec(select(DriftCheck).order_by(col(DriftCheck.id))).all()
        assert [r.tests for r in rows] == [s.tests for s in stored]  # JSONB round trip
    assert {m: c.verdict for m, c in monitor.latest().items()} == {"classifier": "no_drift", "detector": "drift"}
