"""``python -m services.experiments create|list|pause|resume|stop|weights|show`` on ``CV_DATABASE_URL`` (or SQLite).

Example::

    python -m services.experiments create --model classifier --arm control=v2:50 --arm candidate=v1:50
    python -m services.experiments weights classifier-1a2b3c candidate=20
    python -m services.experiments show classifier-1a2b3c
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from kernel.db.session import create_db_engine
from kernel.db.tables import Experiment, ExperimentPublic, ExperimentStatus
from kernel.errors import ServiceError
from services.config import get_settings
from services.experiments import store
from services.experiments.assignment import Arm
from services.experiments.report import analyze_experiment
from services.models.catalogue import MODEL_NAMES

STATUS_COMMANDS = {
    "pause": ExperimentStatus.PAUSED,
    "resume": ExperimentStatus.ACTIVE,
    "stop": ExperimentStatus.STOPPED,
}


def parse_arm(raw: str) -> Arm:
    """``NAME=VERSION:WEIGHT`` (``:WEIGHT`` optional, 1 by default) as an :class:`Arm`."""
    name, sep, rest = raw.partition("=")
    version, _, weight = rest.partition(":")
    if not sep or not name or not version:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected NAME=VERSION:WEIGHT, e.g. control=v2:50")
    try:
        return Arm(name=name, version=version, weight=float(weight or 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: the weight must be a number") from None


def parse_weight(raw: str) -> tuple[str, float]:
    """``NAME=WEIGHT``."""
    name, sep, weight = raw.partition("=")
    try:
        return name, float(weight) if sep and name else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected NAME=WEIGHT, e.g. candidate=20") from None


def parse_time(raw: str) -> datetime:
    """An ISO 8601 time; UTC when it names no zone."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected an ISO 8601 time, e.g. 2026-12-24T00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.experiments", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="start an experiment over two or more versions of a model")
    create.add_argument("--model", required=True, choices=MODEL_NAMES)
    create.add_argument("--arm", action="append", type=parse_arm, required=True, help="NAME=VERSION:WEIGHT (2+)")
    create.add_argument("--id", help="the experiment's id (default: MODEL-<6 hex>)")
    create.add_argument("--salt", help="keys the assignment hash (default: random)")
    create.add_argument("--start", type=parse_time, help="ISO 8601; default: now")
    create.add_argument("--end", type=parse_time, help="ISO 8601; default: until stopped")
    listing = commands.add_parser("list", help="experiments, newest first")
    listing.add_argument("--status", choices=[s.value for s in ExperimentStatus])
    for name, status in STATUS_COMMANDS.items():
        commands.add_parser(name, help=f"set an experiment {status.value}").add_argument("id")
    weights = commands.add_parser("weights", help="change arms' weights (only the clients that must move do)")
    weights.add_argument("id")
    weights.add_argument("weight", nargs="+", type=parse_weight, help="NAME=WEIGHT")
    show = commands.add_parser("show", help="an experiment and its analysis, as JSON")
    show.add_argument("id")
    show.add_argument("--alpha", type=float, default=0.05)
    return parser


def _describe(row: Experiment) -> str:
    arms = ", ".join(f"{a['name']}={a['version']}:{a['weight']:g}" for a in row.arms)
    window = f"{row.start_at or '-'} .. {row.end_at or '-'}"
    return f"{row.id}\t{row.model}\t{row.status}\t{arms}\t{window}"


def _change(args: argparse.Namespace, session: Session) -> Experiment | None:
    """pause, resume, stop, weights; or show's read."""
    if args.command in STATUS_COMMANDS:
        return store.set_status(session=session, experiment_id=args.id, status=STATUS_COMMANDS[args.command])
    if args.command == "weights":
        return store.set_weights(session=session, experiment_id=args.id, weights=dict(args.weight))
    return store.get_experiment(session=session, experiment_id=args.id)


def _run(args: argparse.Namespace, session: Session) -> tuple[int, str]:
    if args.command == "create":
        created = store.create_experiment(
            session=session,
            experiment_id=args.id or f"{args.model}-{secrets.token_hex(3)}",
            model=args.model,
            arms=args.arm,
            salt=args.salt or secrets.token_hex(16),
            start_at=args.start,
            end_at=args.end,
        )
        return 0, _describe(created)
    if args.command == "list":
        return 0, "\n".join(_describe(r) for r in store.list_experiments(session=session, status=args.status))
    row = _change(args, session)
    if row is None:
        return 1, f"no experiment {args.id!r}"
    if args.command != "show":
        return 0, _describe(row)
    body = {
        "experiment": ExperimentPublic.model_validate(row).model_dump(mode="json"),
        "analysis": analyze_experiment(session=session, experiment=row, alpha=args.alpha).model_dump(mode="json"),
    }
    return 0, json.dumps(body, indent=2)


def main(argv: Sequence[str] | None = None, engine: Engine | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    engine = engine or create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    try:
        with Session(engine) as session:
            code, out = _run(args, session)
            session.commit()
    except ServiceError as exc:
        print(f"error: {exc.public_message}", file=sys.stderr)
        return 2
    print(out, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
