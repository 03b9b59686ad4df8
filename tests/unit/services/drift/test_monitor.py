"""The drift monitor over a real (SQLite) inference log: which rows, which version, which reference, what is stored
and exported. The statistics themselves are services/drift/detect.py's: only clear-cut verdicts are asserted here."""

from __future__ import annotations

import logging
import math
import os
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine
from sqlmodel import Session, select

from kernel.db.session import create_db_engine
from kernel.db.tables import DriftCheck, DriftCheckBase, utcnow
from kernel.errors import ReferenceNotFound
from services.config import ServingSettings
from services.drift.detect import DriftTest
from services.drift.features import IMAGE_FEATURES
from services.drift.monitor import (
    TEST_NAMES,
    DriftMonitor,
    DriftPolicy,
    as_row,
    dominant_version,
    export_check,
    latest_features,
    load_reference,
)
from tests.unit.services.drift.logged import bright, dark, log_rows, save_reference

VERDICTS = {"drift", "no_drift", "insufficient_data"}


@pytest.fixture
def policy(tmp_path: Path) -> DriftPolicy:
    return DriftPolicy(window=60, alpha=0.01, min_rows=30, permutations=100, reference_dir=tmp_path / "refs")


@pytest.fixture
def monitor(engine: Engine, policy: DriftPolicy) -> DriftMonitor:
    return DriftMonitor(engine, policy, models=("classifier", "detector"))


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_the_policy_is_the_settings_drift_values(tmp_path: Path) -> None:
    settings = ServingSettings(
        _env_file=None,  # type: ignore[call-arg]
        drift_window=7,
        drift_alpha=0.05,
        drift_min_rows=3,
        drift_permutations=9,
        drift_reference_dir=tmp_path,
    )
    assert DriftPolicy.from_settings(settings) == DriftPolicy(7, 0.05, 3, 9, tmp_path)


def test_the_default_reference_dir_is_the_committed_artifacts() -> None:
    from kernel.paths import REPO_ROOT

    assert ServingSettings(_env_file=None).drift_reference_dir == REPO_ROOT / "artifacts" / "drift"  # type: ignore[call-arg]


def test_latest_features_are_the_newest_answered_rows_of_the_model_with_features(engine: Engine) -> None:
    rows = bright(6)
    log_rows(engine, rows[:3])
    log_rows(engine, [None], start=utcnow() - timedelta(minutes=30))  # from before the column: skipped
    log_rows(engine, rows[3:4], status=503, start=utcnow() - timedelta(minutes=20))  # a failure: skipped
    log_rows(engine, rows[4:5], model="detector", start=utcnow() - timedelta(minutes=10))
    log_rows(engine, rows[5:6], version="v1", start=utcnow() - timedelta(minutes=5))
    with Session(engine) as session:
        got = latest_features(session, model="classifier", window=3)
        pinned = latest_features(session, model="classifier", window=10, version="v2")
    assert got == [("v1", rows[5]), ("v2", rows[2]), ("v2", rows[1])]  # newest first, at most the window
    assert pinned == [("v2", rows[2]), ("v2", rows[1]), ("v2", rows[0])]


def test_a_row_without_features_is_stored_as_sql_null(engine: Engine) -> None:
    from sqlalchemy import text

    log_rows(engine, [None])
    with Session(engine) as session:
        assert session.exec(text("SELECT count(*) FROM inference_log WHERE features IS NULL")).one()[0] == 1  # type: ignore[call-overload]


def test_the_dominant_version_is_the_most_logged_and_the_newest_on_a_tie() -> None:
    assert dominant_version([("v1", {}), ("v2", {}), ("v2", {})]) == "v2"
    assert dominant_version([("v1", {}), ("v2", {}), ("v2", {}), ("v1", {})]) == "v1"  # rows are newest first
    assert dominant_version([(None, {})]) is None and dominant_version([]) is None


def test_nothing_logged_is_insufficient_data_without_a_version(monitor: DriftMonitor) -> None:
    result = monitor.check("classifier")
    assert (result.model, result.version, result.n, result.verdict, result.tests) == (
        "classifier",
        None,
        0,
        "insufficient_data",
        [],
    )
    assert (result.window, result.alpha) == (60, 0.01)


def test_a_version_without_a_reference_is_refused(monitor: DriftMonitor, engine: Engine) -> None:
    log_rows(engine, bright(3))
    with pytest.raises(ReferenceNotFound, match=r"classifier-v2\.json"):
        monitor.check("classifier")


def test_a_small_window_is_insufficient_data(monitor: DriftMonitor, engine: Engine, policy: DriftPolicy) -> None:
    save_reference(policy.reference_dir, bright(40))
    log_rows(engine, bright(10))
    result = monitor.check("classifier")
    assert (result.version, result.n, result.verdict, result.tests) == ("v2", 10, "insufficient_data", [])


def _assert_structure(result: DriftCheckBase) -> None:
    assert result.verdict in VERDICTS and result.tests
    for test in result.tests:
        assert set(test) == {"name", "feature", "statistic", "p_value", "adjusted_p_value", "drift"}
        assert isinstance(test["drift"], bool) and test["name"] in TEST_NAMES
    assert {t["feature"] for t in result.tests} <= {*IMAGE_FEATURES, "confidence", "labels", "sketch"}


def test_the_reference_traffic_itself_is_no_drift(monitor: DriftMonitor, engine: Engine, policy: DriftPolicy) -> None:
    rows = bright(40)
    save_reference(policy.reference_dir, rows)
    log_rows(engine, rows)
    result = monitor.check("classifier")
    _assert_structure(result)
    assert (result.version, result.n, result.verdict) == ("v2", 40, "no_drift")
    assert not any(t["drift"] for t in result.tests)


def test_night_photos_against_a_daylight_reference_are_drift(
    monitor: DriftMonitor, engine: Engine, policy: DriftPolicy
) -> None:
    save_reference(policy.reference_dir, bright(40))
    log_rows(engine, bright(40, start=100) + dark(40))  # the window: the newest 40, all dark
    result = monitor.check("classifier", window=40)
    _assert_structure(result)
    assert (result.n, result.window, result.verdict) == (40, 40, "drift")
    assert any(t["drift"] and t["feature"] == "brightness" for t in result.tests)


def test_only_the_checked_versions_rows_are_compared(
    monitor: DriftMonitor, engine: Engine, policy: DriftPolicy
) -> None:
    save_reference(policy.reference_dir, bright(40), version="v1")
    log_rows(engine, bright(35), version="v1")
    log_rows(engine, dark(5), version="v2", start=utcnow() - timedelta(minutes=1))
    result = monitor.check("classifier")
    assert (result.version, result.n) == ("v1", 35)
    pinned = monitor.check("classifier", version="v1", window=10)
    assert (pinned.version, pinned.n, pinned.window) == ("v1", 10, 10)


def test_a_changed_reference_file_is_read_again(policy: DriftPolicy) -> None:
    path = save_reference(policy.reference_dir, bright(5))
    first = load_reference(policy.reference_dir, "classifier", "v2")
    assert load_reference(policy.reference_dir, "classifier", "v2") is first  # parsed once
    save_reference(policy.reference_dir, bright(6))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_reference(policy.reference_dir, "classifier", "v2").n == 6


def test_check_all_stores_each_model_with_a_reference_and_skips_the_others(
    monitor: DriftMonitor, engine: Engine, policy: DriftPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    rows = bright(40)
    save_reference(policy.reference_dir, rows)
    log_rows(engine, rows)
    log_rows(engine, bright(3), model="detector")  # logged, but no detector reference
    with caplog.at_level(logging.WARNING, logger="services.drift.monitor"):
        stored = monitor.check_all()
    assert [(s.model, s.version, s.n, s.verdict) for s in stored] == [("classifier", "v2", 40, "no_drift")]
    assert "drift check skipped" in caplog.text
    with Session(engine) as session:
        (row,) = session.exec(select(DriftCheck)).all()
    assert row.id is not None and row.tests == stored[0].tests and row.window == 60


def test_latest_is_the_newest_stored_check_of_each_model(monitor: DriftMonitor, engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as session:
        for model, minutes, verdict in (
            ("classifier", 10, "drift"),
            ("classifier", 1, "no_drift"),
            ("detector", 5, "insufficient_data"),
            ("embedder", 0, "drift"),  # not a model of this monitor
        ):
            created = now - timedelta(minutes=minutes)
            session.add(DriftCheck(model=model, window=5, n=5, verdict=verdict, alpha=0.01, created_at=created))
        session.commit()
    latest = monitor.latest()
    assert {m: c.verdict for m, c in latest.items()} == {"classifier": "no_drift", "detector": "insufficient_data"}


def _check(model: str, tests: list[dict[str, object]], n: int = 50) -> DriftCheckBase:
    return DriftCheckBase(model=model, version="v2", window=50, n=n, verdict="drift", alpha=0.01, tests=tests)


def _test(name: str, feature: str, p: float | None, drift: bool) -> dict[str, object]:
    return {"name": name, "feature": feature, "statistic": 0.5, "p_value": p, "adjusted_p_value": p, "drift": drift}


def test_export_sets_detected_per_test_and_the_p_values() -> None:
    model = "gauge-model-a"
    check = _check(
        model,
        [
            _test("ks", "brightness", 0.001, True),
            _test("ks", "blur", 0.5, False),
            _test("psi", "labels", None, False),
            {**_test("chi2", "labels", 0.2, False), "adjusted_p_value": None},  # falls back to the raw p-value
        ],
    )
    export_check(check)
    detected = {name: _gauge("cv_drift_detected", model=model, test=name) for name in TEST_NAMES}
    assert detected == {"ks": 1.0, "psi": 0.0, "chi2": 0.0, "mmd": 0.0}
    assert _gauge("cv_drift_p_value", model=model, test="ks", feature="brightness") == 0.001
    assert _gauge("cv_drift_p_value", model=model, test="chi2", feature="labels") == 0.2
    assert _gauge("cv_drift_p_value", model=model, test="psi", feature="labels") is None  # PSI has no p-value
    assert _gauge("cv_drift_window_rows", model=model) == 50
    assert _gauge("cv_drift_last_check_timestamp_seconds", model=model) == pytest.approx(check.created_at.timestamp())


def test_a_test_a_newer_check_did_not_run_has_a_nan_p_value() -> None:
    model = "gauge-model-b"
    export_check(_check(model, [_test("ks", "brightness", 0.001, True)]))
    export_check(DriftCheckBase(model=model, window=50, n=3, verdict="insufficient_data", alpha=0.01))
    assert math.isnan(_gauge("cv_drift_p_value", model=model, test="ks", feature="brightness") or 0.0)
    assert _gauge("cv_drift_detected", model=model, test="ks") == 0.0


def test_export_reads_the_latest_stored_checks(monitor: DriftMonitor, engine: Engine) -> None:
    with Session(engine) as session:
        session.add(DriftCheck(**_check("detector", [_test("mmd", "sketch", 0.0001, True)]).model_dump()))
        session.commit()
    monitor.export()
    assert _gauge("cv_drift_detected", model="detector", test="mmd") == 1.0


def test_export_without_the_database_changes_nothing(
    tmp_path: Path, policy: DriftPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    unmigrated = create_db_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with caplog.at_level(logging.WARNING, logger="services.drift.monitor"):
        DriftMonitor(unmigrated, policy).export()
    assert "the database is unreachable" in caplog.text


def test_values_json_cannot_hold_are_null() -> None:
    test = DriftTest(
        name="psi", feature="labels", statistic=math.inf, p_value=math.nan, adjusted_p_value=None, drift=True
    )
    assert as_row(test) == {
        "name": "psi",
        "feature": "labels",
        "statistic": None,
        "p_value": None,
        "adjusted_p_value": None,
        "drift": True,
    }
