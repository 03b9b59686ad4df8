"""``python -m services.jobs.alive``: exit 0 when this container's job worker beat recently (the worker's HEALTHCHECK).

The worker names itself ``<name>@<host>`` (``--hostname cv-jobs@%h``) and rewrites its ``job_worker`` row every
``CV_JOBS_HEARTBEAT_INTERVAL_S`` (services/jobs/heartbeat.py): the same signal the api's health counts, read for
this host only. Celery's own remote control is off (see heartbeat.py), so ``celery inspect ping`` is not used.
"""

from __future__ import annotations

import argparse
import socket
import sys

from kernel.db.session import create_db_engine
from services.config import get_settings
from services.jobs.heartbeat import is_alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="cv-jobs", help="the part of the worker's node name before '@'")
    args = parser.parse_args(argv)
    settings = get_settings()
    engine = create_db_engine(settings.sqlalchemy_url)
    try:
        hostname = f"{args.name}@{socket.gethostname()}"
        alive = is_alive(engine, hostname=hostname, interval_s=settings.jobs_heartbeat_interval_s)
    except Exception as error:  # a health check answers; it does not crash
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if not alive:
        print(f"unhealthy: no recent heartbeat from {hostname}", file=sys.stderr)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
