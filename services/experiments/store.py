"""Data-layer functions for A/B experiments and feedback (keyword-only; the caller owns the session and commits)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import case, delete, func
from sqlmodel import Session, col, select

from kernel.db.tables import Experiment, ExperimentStatus, Feedback, FeedbackBase, InferenceLog, utcnow
from kernel.errors import ExperimentConflict, InvalidParameter
from services.experiments.assignment import Arm

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with its time zone (SQLite hands timestamps back naive; they were written in UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def arms_of(experiment: Experiment) -> list[Arm]:
    """The experiment's arms, in the order they were declared."""
    return [Arm(name=a["name"], version=a["version"], weight=float(a["weight"])) for a in experiment.arms]


def check_arms(arms: Sequence[Arm]) -> None:
    """Refuse (422) fewer than two arms, repeated names, negative weights or no positive weight."""
    if len(arms) < 2:
        raise InvalidParameter("an experiment needs two or more arms")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise InvalidParameter(f"arm names must differ: {names}")
    for arm in arms:
        if not ID_PATTERN.match(arm.name) or not arm.version or len(arm.version) > 64:
            raise InvalidParameter(f"arm {arm.name!r}: a name of letters, digits, '_', '.', '-' and a version")
        if arm.weight < 0 or arm.weight != arm.weight:
            raise InvalidParameter(f"arm {arm.name!r}: weights are non-negative numbers")
    if sum(a.weight for a in arms) <= 0:
        raise InvalidParameter("at least one arm needs a positive weight")


def create_experiment(
    *,
    session: Session,
    experiment_id: str,
    model: str,
    arms: Sequence[Arm],
    salt: str,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> Experiment:
    """Store a new active experiment; 409 when the id is taken or another one on ``model`` has not stopped."""
    if not ID_PATTERN.match(experiment_id):
        raise InvalidParameter(f"experiment id {experiment_id!r}: letters, digits, '_', '.', '-' (64 at most)")
    check_arms(arms)
    if not salt or len(salt) > 64:
        raise InvalidParameter("the salt is 1 to 64 characters")
    if start_at is not None and end_at is not None and aware(end_at) <= aware(start_at):  # type: ignore[operator]
        raise InvalidParameter("the experiment must end after it starts")
    if session.get(Experiment, experiment_id) is not None:
        raise ExperimentConflict(f"experiment {experiment_id!r} exists")
    live = session.exec(
        select(Experiment).where(Experiment.model == model, col(Experiment.status) != ExperimentStatus.STOPPED.value)
    ).first()
    if live is not None:
        raise ExperimentConflict(f"experiment {live.id!r} on {model} has not stopped; one at a time per model")
    row = Experiment(
        id=experiment_id,
        model=model,
        arms=[{"name": a.name, "version": a.version, "weight": a.weight} for a in arms],
        salt=salt,
        start_at=start_at,
        end_at=end_at,
    )
    session.add(row)
    session.flush()
    return row


def get_experiment(*, session: Session, experiment_id: str) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def list_experiments(*, session: Session, status: str | None = None) -> list[Experiment]:
    """Experiments, newest first, optionally of one status."""
    query = select(Experiment)
    if status is not None:
        query = query.where(Experiment.status == status)
    return list(session.exec(query.order_by(col(Experiment.created_at).desc(), col(Experiment.id))))


def active_experiments(*, session: Session) -> list[Experiment]:
    """Experiments whose status is active (their window is checked where they are used), oldest first."""
    query = select(Experiment).where(Experiment.status == ExperimentStatus.ACTIVE.value)
    return list(session.exec(query.order_by(col(Experiment.created_at), col(Experiment.id))))


def set_status(*, session: Session, experiment_id: str, status: ExperimentStatus) -> Experiment | None:
    """Pause, resume or stop an experiment (None when there is none); a stopped experiment stays stopped (409)."""
    row = session.get(Experiment, experiment_id)
    if row is None:
        return None
    if row.status == ExperimentStatus.STOPPED.value and status != ExperimentStatus.STOPPED:
        raise ExperimentConflict(f"experiment {experiment_id!r} has stopped; create a new one")
    row.status, row.updated_at = status.value, utcnow()
    session.add(row)
    session.flush()
    return row


def set_weights(*, session: Session, experiment_id: str, weights: Mapping[str, float]) -> Experiment | None:
    """Change some arms' weights (clients move only as the change requires; see assignment.py)."""
    row = session.get(Experiment, experiment_id)
    if row is None:
        return None
    unknown = set(weights) - {a["name"] for a in row.arms}
    if unknown:
        raise InvalidParameter(f"no arm {sorted(unknown)} in experiment {experiment_id!r}")
    arms = [Arm(a.name, a.version, weights.get(a.name, a.weight)) for a in arms_of(row)]
    check_arms(arms)
    row.arms = [{"name": a.name, "version": a.version, "weight": a.weight} for a in arms]
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def logged_answer(*, session: Session, request_id: str, item_index: int) -> InferenceLog | None:
    """The inference-log row of one answered image (the newest, should a request id have been reused)."""
    query = select(InferenceLog).where(
        InferenceLog.request_id == request_id,
        InferenceLog.item_index == item_index,
        InferenceLog.job_id == None,  # noqa: E711
    )
    return session.exec(query.order_by(col(InferenceLog.id).desc())).first()


def save_feedback(*, session: Session, feedback: FeedbackBase) -> Feedback:
    """Store feedback on one answer, replacing what was said of it before (the latest word counts)."""
    session.connection().execute(
        delete(Feedback).where(
            col(Feedback.request_id) == feedback.request_id, col(Feedback.item_index) == feedback.item_index
        )
    )
    row = Feedback.model_validate(feedback)
    session.add(row)
    session.flush()
    return row


def feedback_counts(*, session: Session, experiment_id: str) -> dict[str, tuple[int, int]]:
    """Per arm: (answers judged right, answers judged) of one experiment."""
    right = func.sum(case((col(Feedback.correct), 1), else_=0))
    query = (
        select(Feedback.arm, right, func.count())
        .where(Feedback.experiment == experiment_id)
        .group_by(col(Feedback.arm))
    )
    return {arm or "": (int(ok or 0), int(judged)) for arm, ok, judged in session.exec(query)}


def feedback_judgements(*, session: Session, experiment_id: str) -> dict[str, list[tuple[float, bool]]]:
    """Per arm: (when, right) of every judged answer of one experiment, so the sequential test sees each look."""
    query = select(Feedback.arm, Feedback.created_at, Feedback.correct).where(Feedback.experiment == experiment_id)
    found: dict[str, list[tuple[float, bool]]] = {}
    for arm, created_at, correct in session.exec(query):
        found.setdefault(arm or "", []).append((created_at.timestamp(), bool(correct)))
    return found


def logged_outcomes(*, session: Session, experiment_id: str) -> list[tuple[str | None, int, float, float | None]]:
    """(arm, status, latency_ms, top_score) of every inference-log row of one experiment."""
    query = select(InferenceLog.arm, InferenceLog.status, InferenceLog.latency_ms, InferenceLog.top_score).where(
        InferenceLog.experiment == experiment_id
    )
    return [tuple(row) for row in session.exec(query)]  # type: ignore[misc]
