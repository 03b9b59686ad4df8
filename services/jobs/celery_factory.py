"""The Celery app of the batch jobs, as both sides need it: the api publishes with it, the worker consumes.

The api only publishes, by :data:`TASK_NAME`, without importing the task code; the worker's
composition root (services/jobs/celery_app.py) builds its app here too and adds the tasks.
Results live in the database, not in a Celery result backend. Late acknowledgement, rejection on
worker loss and a prefetch of one mean a worker holds only the messages it is working on, and
those go back to the queue if it dies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery

from services.config import ServingSettings
from services.jobs.broker import ALIAS

TASK_NAME = "cv.jobs.process_chunk"
DRIFT_TASK_NAME = "cv.drift.check"  # the periodic drift check (services/drift/monitor.py), sent by Celery beat


def transport_options(settings: ServingSettings) -> dict[str, Any]:
    """Visibility timeout on every broker; the local one is polled."""
    timeout = settings.jobs_visibility_timeout_s
    options: dict[str, Any] = {"visibility_timeout": timeout}
    if settings.broker_url.startswith(f"{ALIAS}+"):
        options["polling_interval"] = settings.jobs_poll_interval_s
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        # kombu looks for expired deliveries every interval x throttle seconds: 10 x 10 by default, so a dead
        # worker's message waited up to 100 s past its timeout. Every timeout / 5 seconds (1 to 10) instead.
        options["unacked_restore_interval"] = max(1.0, min(10.0, timeout / 5))
        options["unacked_restore_throttle"] = 1
    return options


def create_celery(settings: ServingSettings, include: Sequence[str] = ()) -> Celery:
    """The Celery app for ``settings`` (no connection is made until something is sent or consumed).

    Args:
        settings: The broker, queue and timeouts.
        include: Task modules a worker imports when it starts (none for a publisher).
    """
    app = Celery("cv_jobs", include=list(include))
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.jobs_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # The local broker has no fanout exchange: no remote control, gossip or events, on any broker.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    return app


def beat_schedule(settings: ServingSettings) -> dict[str, dict[str, Any]]:
    """What Celery beat sends: the drift check every ``CV_DRIFT_INTERVAL_S`` (nothing when drift is off).

    A message no worker took within one interval expires: the next one does the same work on fresher data.
    """
    if not settings.drift_enabled:
        return {}
    interval = settings.drift_interval_s
    return {
        "drift-check": {
            "task": DRIFT_TASK_NAME,
            "schedule": interval,
            "options": {"queue": settings.jobs_queue, "expires": interval},
        }
    }
