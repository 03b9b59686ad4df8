"""An experiment's outcomes, per arm, from the inference logs and the feedback, analysed (analysis.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session

from kernel.db.tables import Experiment
from services.experiments.analysis import Analysis, ArmSample, analyze
from services.experiments.store import arms_of, feedback_judgements, logged_outcomes


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0


def arm_samples(*, session: Session, experiment: Experiment) -> list[ArmSample]:
    """One sample per arm, in the order the arms were declared.

    Every logged answer of the experiment counts as a request of its arm (classify and detect answer one
    image per request); those answered 200 give a latency and, with a top score, a confidence; 5xx are errors.
    4xx answers (a bad image) count as requests only: the client's fault, not the arm's.
    """
    tallies = {arm.name: _Tally() for arm in arms_of(experiment)}
    for arm, status, latency_ms, top_score in logged_outcomes(session=session, experiment_id=experiment.id):
        tally = tallies.get(arm or "")
        if tally is None:  # an arm since removed from the definition cannot happen today; ignore it if it does
            continue
        tally.requests += 1
        if status >= 500:
            tally.errors += 1
        elif status < 400:
            tally.latencies_ms.append(latency_ms)
            if top_score is not None:
                tally.confidences.append(top_score)
    # Each judgement with its time: the mSPRT then looks after every one, as it is meant to (analysis.py).
    judged = feedback_judgements(session=session, experiment_id=experiment.id)
    return [
        ArmSample(
            name=arm.name,
            version=arm.version,
            latencies_ms=tallies[arm.name].latencies_ms,
            requests=tallies[arm.name].requests,
            errors=tallies[arm.name].errors,
            confidences=tallies[arm.name].confidences,
            correct=sum(right for _, right in judged.get(arm.name, [])),
            judged=len(judged.get(arm.name, [])),
            judgements=judged.get(arm.name, []),
        )
        for arm in arms_of(experiment)
    ]


def analyze_experiment(*, session: Session, experiment: Experiment, alpha: float = 0.05) -> Analysis:
    """The analysis of ``experiment`` now; its first arm is the control."""
    samples = arm_samples(session=session, experiment=experiment)
    return analyze(samples, control=samples[0].name if samples else None, alpha=alpha)
