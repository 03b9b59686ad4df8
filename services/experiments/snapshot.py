"""The api's view of the running experiments: an in-memory snapshot, read again every few seconds.

Assigning a request is a dictionary lookup and a few hashes, never a database query; the snapshot is
refreshed off the event loop when it is older than ``CV_EXPERIMENTS_REFRESH_S``. A failed refresh keeps
the last snapshot (and tries again after the same interval), so a database outage freezes experiments
rather than ending them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from services.experiments.assignment import Arm, choose_arm
from services.experiments.store import active_experiments, arms_of, aware
from services.metrics import EXPERIMENT_ASSIGNMENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """The arm an experiment gave a request, and the version it serves."""

    experiment: str
    arm: str
    version: str


@dataclass(frozen=True)
class RunningExperiment:
    """An active experiment as the snapshot holds it."""

    id: str
    model: str
    salt: str
    arms: tuple[Arm, ...]
    start_at: datetime | None = None
    end_at: datetime | None = None

    def running(self, now: datetime) -> bool:
        """Whether ``now`` is within the experiment's window."""
        return (self.start_at is None or self.start_at <= now) and (self.end_at is None or now < self.end_at)

    def assign(self, client_id: str) -> Assignment | None:
        arm = choose_arm(self.arms, salt=self.salt, client_id=client_id)
        return None if arm is None else Assignment(self.id, arm.name, arm.version)


def load_running(engine: Engine) -> list[RunningExperiment]:
    """The active experiments in the database, oldest first."""
    with Session(engine) as session:
        return [
            RunningExperiment(
                id=e.id,
                model=e.model,
                salt=e.salt,
                arms=tuple(arms_of(e)),
                start_at=aware(e.start_at),
                end_at=aware(e.end_at),
            )
            for e in active_experiments(session=session)
        ]


class ExperimentBook:
    """Assigns requests to the arms of the running experiment of their model, from a snapshot."""

    def __init__(
        self,
        load: Callable[[], Sequence[RunningExperiment]],
        *,
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh_s = refresh_s
        self._clock = clock
        self._experiments: tuple[RunningExperiment, ...] = ()
        self._loaded_at: float | None = None

    @classmethod
    def from_engine(cls, engine: Engine, *, refresh_s: float) -> ExperimentBook:
        return cls(lambda: load_running(engine), refresh_s=refresh_s)

    def refresh(self) -> None:
        """Read the running experiments again (a failure keeps the last snapshot)."""
        self._loaded_at = self._clock()
        try:
            self._experiments = tuple(self._load())
        except Exception as exc:
            log.warning("experiments not refreshed; keeping the last snapshot", extra={"error": repr(exc)})

    def stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self.refresh_s

    def running_for(self, model: str, now: datetime | None = None) -> RunningExperiment | None:
        """The oldest experiment on ``model`` that is active and within its window now, from the snapshot."""
        moment = now or datetime.now(UTC)
        return next((e for e in self._experiments if e.model == model and e.running(moment)), None)

    async def assign(self, model: str, client_id: str) -> Assignment | None:
        """The arm of ``model``'s running experiment for ``client_id`` (None outside experiments); counted."""
        if self.stale():
            self._loaded_at = self._clock()  # one refresh at a time; concurrent requests use the current snapshot
            await asyncio.to_thread(self.refresh)
        experiment = self.running_for(model)
        assignment = experiment.assign(client_id) if experiment is not None else None
        if assignment is not None:
            EXPERIMENT_ASSIGNMENTS.labels(assignment.experiment, assignment.arm).inc()
        return assignment
