"""Shared test data: experiments and inference-log rows in a migrated database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import Experiment, InferenceLogCreate
from services.db.logs import insert_inference_logs
from services.experiments.assignment import Arm
from services.experiments.store import create_experiment

ARMS = (Arm("control", "v1", 50.0), Arm("candidate", "v2", 50.0))


def new_experiment(
    engine: Engine, experiment_id: str = "exp-1", model: str = "classifier", **kwargs: Any
) -> Experiment:
    with Session(engine) as session:
        row = create_experiment(
            session=session,
            experiment_id=experiment_id,
            model=model,
            arms=kwargs.pop("arms", ARMS),
            salt=kwargs.pop("salt", "salt"),
            **kwargs,
        )
        session.commit()
        session.refresh(row)
        return row


def log_rows(engine: Engine, *rows: dict[str, Any]) -> None:
    """Inference-log rows of classify answers; each dict overrides the defaults."""
    defaults: dict[str, Any] = {"route": "/api/v1/classify", "model": "classifier", "status": 200, "latency_ms": 10.0}
    with Session(engine) as session:
        insert_inference_logs(session=session, records=[InferenceLogCreate(**(defaults | r)) for r in rows])
        session.commit()
