"""Experiment and feedback data functions, and the per-arm samples, on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import ExperimentStatus, FeedbackBase
from kernel.errors import ExperimentConflict, InvalidParameter
from services.experiments import store
from services.experiments.assignment import Arm
from services.experiments.report import analyze_experiment, arm_samples
from tests.unit.services.experiments.helpers import ARMS, log_rows, new_experiment


def test_create_then_read_and_list(engine: Engine) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    new_experiment(engine, start_at=start, end_at=start + timedelta(days=7))
    new_experiment(engine, "exp-2", model="detector", arms=(Arm("a", "v1", 1), Arm("b", "v1", 1)))
    with Session(engine) as session:
        row = store.get_experiment(session=session, experiment_id="exp-1")
        assert row is not None and row.status == "active" and store.aware(row.start_at) == start
        assert [a.name for a in store.arms_of(row)] == ["control", "candidate"]
        assert {e.id for e in store.list_experiments(session=session)} == {"exp-1", "exp-2"}
        assert [e.id for e in store.list_experiments(session=session, status="paused")] == []
        assert store.get_experiment(session=session, experiment_id="nope") is None


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ((Arm("a", "v1", 1),), "two or more arms"),
        ((Arm("a", "v1", 1), Arm("a", "v2", 1)), "must differ"),
        ((Arm("a", "v1", -1), Arm("b", "v2", 1)), "non-negative"),
        ((Arm("a", "v1", 0), Arm("b", "v2", 0)), "positive weight"),
        ((Arm("a b", "v1", 1), Arm("b", "v2", 1)), "letters, digits"),
        ((Arm("a", "", 1), Arm("b", "v2", 1)), "letters, digits"),
    ],
)
def test_bad_arms_are_refused(engine: Engine, arms: tuple[Arm, ...], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        new_experiment(engine, arms=arms)


def test_bad_id_salt_or_window_is_refused(engine: Engine) -> None:
    now = datetime.now(UTC)
    with pytest.raises(InvalidParameter, match="experiment id"):
        new_experiment(engine, "bad id!")
    with pytest.raises(InvalidParameter, match="salt"):
        new_experiment(engine, salt="")
    with pytest.raises(InvalidParameter, match="end after"):
        new_experiment(engine, start_at=now, end_at=now)


def test_one_unstopped_experiment_per_model_and_unique_ids(engine: Engine) -> None:
    new_experiment(engine)
    with pytest.raises(ExperimentConflict, match="exists"):
        new_experiment(engine)
    with pytest.raises(ExperimentConflict, match="one at a time"):
        new_experiment(engine, "exp-2")
    with Session(engine) as session:
        store.set_status(session=session, experiment_id="exp-1", status=ExperimentStatus.STOPPED)
        session.commit()
    new_experiment(engine, "exp-2")


def test_pause_resume_stop_and_stopped_stays_stopped(engine: Engine) -> None:
    new_experiment(engine)
    with Session(engine) as session:
        for status in (ExperimentStatus.PAUSED, ExperimentStatus.ACTIVE, ExperimentStatus.STOPPED):
            row = store.set_status(session=session, experiment_id="exp-1", status=status)
            assert row is not None and row.status == status.value
            assert [e.id for e in store.active_experiments(session=session)] == (
                ["exp-1"] if status == ExperimentStatus.ACTIVE else []
            )
        with pytest.raises(ExperimentConflict, match="has stopped"):
            store.set_status(session=session, experiment_id="exp-1", status=ExperimentStatus.ACTIVE)
        assert store.set_status(session=session, experiment_id="nope", status=ExperimentStatus.PAUSED) is None


def test_set_weights_changes_only_the_named_arms(engine: Engine) -> None:
    new_experiment(engine)
    with Session(engine) as session:
        row = store.set_weights(session=session, experiment_id="exp-1", weights={"candidate": 20})
        session.commit()
        assert row is not None
        assert [(a.name, a.weight) for a in store.arms_of(row)] == [("control", 50.0), ("candidate", 20.0)]
        with pytest.raises(InvalidParameter, match="no arm"):
            store.set_weights(session=session, experiment_id="exp-1", weights={"other": 1})
        with pytest.raises(InvalidParameter, match="positive weight"):
            store.set_weights(session=session, experiment_id="exp-1", weights={"candidate": 0, "control": 0})
        assert store.set_weights(session=session, experiment_id="nope", weights={}) is None


def test_feedback_is_stored_against_the_logged_answer_and_replaced(engine: Engine) -> None:
    log_rows(engine, {"request_id": "r1", "top_label": "tabby", "experiment": "exp-1", "arm": "control"})
    with Session(engine) as session:
        answer = store.logged_answer(session=session, request_id="r1", item_index=0)
        assert answer is not None and answer.arm == "control"
        assert store.logged_answer(session=session, request_id="r1", item_index=1) is None
        verdict = FeedbackBase(request_id="r1", correct=False, experiment="exp-1", arm="control")
        store.save_feedback(session=session, feedback=verdict)
        store.save_feedback(session=session, feedback=verdict.model_copy(update={"correct": True}))
        session.commit()
        assert store.feedback_counts(session=session, experiment_id="exp-1") == {"control": (1, 1)}
        ((when, right),) = store.feedback_judgements(session=session, experiment_id="exp-1")["control"]
        assert right is True and when > 0  # the replaced verdict, with its time (the mSPRT's looks)


def test_arm_samples_count_requests_errors_latencies_and_feedback(engine: Engine) -> None:
    experiment = new_experiment(engine)
    log_rows(
        engine,
        {"request_id": "a1", "experiment": "exp-1", "arm": "control", "latency_ms": 12.0, "top_score": 0.9},
        {"request_id": "a2", "experiment": "exp-1", "arm": "control", "latency_ms": 14.0},
        {"request_id": "a3", "experiment": "exp-1", "arm": "control", "status": 500},
        {"request_id": "b1", "experiment": "exp-1", "arm": "candidate", "status": 400},
        {"request_id": "x1", "experiment": "other", "arm": "control"},
        {"request_id": "x2", "experiment": "exp-1", "arm": "gone"},
    )
    with Session(engine) as session:
        for request_id, arm, correct in (("a1", "control", True), ("a2", "control", False), ("b1", "candidate", True)):
            feedback = FeedbackBase(request_id=request_id, correct=correct, experiment="exp-1", arm=arm)
            store.save_feedback(session=session, feedback=feedback)
        session.commit()
        control, candidate = arm_samples(session=session, experiment=experiment)
        analysis = analyze_experiment(session=session, experiment=experiment).model_dump_json()
    assert (control.name, control.version, candidate.name, candidate.version) == ("control", "v1", "candidate", "v2")
    assert (control.requests, control.errors, list(control.latencies_ms)) == (3, 1, [12.0, 14.0])
    assert list(control.confidences) == [0.9] and (control.correct, control.judged) == (1, 2)
    assert (candidate.requests, candidate.errors, list(candidate.latencies_ms)) == (1, 0, [])
    assert (candidate.correct, candidate.judged) == (1, 1)
    assert all(f'"{a.name}"' in analysis for a in ARMS)  # the analysis names every arm (whatever else it holds)
