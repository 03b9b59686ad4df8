"""The api's snapshot of running experiments: refreshed when stale, kept on failure, windows and status honoured."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.tables import ExperimentStatus
from services.experiments.assignment import Arm
from services.experiments.snapshot import Assignment, ExperimentBook, RunningExperiment, load_running
from services.experiments.store import set_status
from services.metrics import EXPERIMENT_ASSIGNMENTS
from tests.unit.services.experiments.helpers import new_experiment

ARMS = (Arm("control", "v1", 1.0), Arm("candidate", "v2", 1.0))
NOW = datetime.now(UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    def __init__(self, *experiments: RunningExperiment) -> None:
        self.experiments = list(experiments)
        self.calls = 0
        self.fail = False

    def __call__(self) -> list[RunningExperiment]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("database down")
        return self.experiments


def running(experiment_id: str = "exp-1", model: str = "classifier", **kwargs: object) -> RunningExperiment:
    return RunningExperiment(id=experiment_id, model=model, salt="s", arms=ARMS, **kwargs)  # type: ignore[arg-type]


def test_assign_reads_the_snapshot_once_per_interval_and_counts() -> None:
    clock, loader = Clock(), Loader(running())
    book = ExperimentBook(loader, refresh_s=5.0, clock=clock)
    before = EXPERIMENT_ASSIGNMENTS.labels("exp-1", "control")._value.get()
    got = [asyncio.run(book.assign("classifier", f"c{i}")) for i in range(20)]
    assert loader.calls == 1
    assert {a.arm for a in got if a} == {"control", "candidate"} and all(a and a.experiment == "exp-1" for a in got)
    assert all(a and a.version == {"control": "v1", "candidate": "v2"}[a.arm] for a in got)
    controls = sum(1 for a in got if a and a.arm == "control")
    assert EXPERIMENT_ASSIGNMENTS.labels("exp-1", "control")._value.get() == before + controls
    assert asyncio.run(book.assign("detector", "c1")) is None  # no experiment on that model
    clock.now += 5.0
    asyncio.run(book.assign("classifier", "c1"))
    assert loader.calls == 2


def test_a_failed_refresh_keeps_the_last_snapshot() -> None:
    clock, loader = Clock(), Loader(running())
    book = ExperimentBook(loader, refresh_s=1.0, clock=clock)
    first = asyncio.run(book.assign("classifier", "c1"))
    loader.fail, clock.now = True, clock.now + 2
    assert asyncio.run(book.assign("classifier", "c1")) == first
    assert loader.calls == 2 and not book.stale()


def test_only_experiments_within_their_window_assign() -> None:
    hour = timedelta(hours=1)
    book = ExperimentBook(
        Loader(
            running("future", start_at=NOW + hour),
            running("past", end_at=NOW - hour),
            running("now", start_at=NOW - hour, end_at=NOW + hour),
        ),
        refresh_s=60.0,
    )
    book.refresh()
    for moment, expected in ((NOW, "now"), (NOW + 2 * hour, "future"), (NOW - 2 * hour, "past")):
        experiment = book.running_for("classifier", moment)
        assert experiment is not None and experiment.id == expected
    assert running(end_at=NOW).running(NOW) is False  # the end is exclusive


def test_running_experiment_assigns_nobody_without_a_positive_weight() -> None:
    silent = RunningExperiment("e", "classifier", "s", (Arm("a", "v1", 0.0), Arm("b", "v2", 0.0)))
    assert silent.assign("c1") is None
    assert running().assign("c1") in {Assignment("exp-1", "control", "v1"), Assignment("exp-1", "candidate", "v2")}


def test_load_running_reads_active_experiments_only(engine: Engine) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    new_experiment(engine, "exp-1", start_at=start)
    new_experiment(engine, "exp-2", model="detector")
    with Session(engine) as session:
        set_status(session=session, experiment_id="exp-2", status=ExperimentStatus.PAUSED)
        session.commit()
    (loaded,) = load_running(engine)
    assert (loaded.id, loaded.model, loaded.salt, loaded.start_at, loaded.end_at) == (
        "exp-1",
        "classifier",
        "salt",
        start,
        None,
    )
    assert [a.name for a in loaded.arms] == ["control", "candidate"]
    book = ExperimentBook.from_engine(engine, refresh_s=60.0)
    assert asyncio.run(book.assign("detector", "c1")) is None  # paused
    assert asyncio.run(book.assign("classifier", "c1")) is not None
