"""The Celery app of the batch-job workers: ``celery -A services.jobs.celery_app worker``.

The api only publishes (by task name, without importing the task code); workers import
``services.jobs.tasks``. Results live in the database, not in a Celery result backend.
Late acknowledgement, rejection on worker loss and a prefetch of one mean a worker holds
only the messages it is working on, and those go back to the queue if it dies.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from kernel.logging import configure_logging
from services.config import ServingSettings, get_settings
from services.jobs.broker import ALIAS
from services.jobs.heartbeat import Heartbeat
from services.jobs.periodic import Periodic

TASK_NAME = "cv.jobs.process_chunk"


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


def create_celery(settings: ServingSettings) -> Celery:
    """The Celery app for ``settings`` (no connection is made until something is sent or consumed)."""
    app = Celery("cv_jobs", include=["services.jobs.tasks"])
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


@signals.after_setup_logger.connect
def _json_logs(**_: Any) -> None:
    """The services' JSON logs in the worker (pool processes inherit them), with the job's request id."""
    configure_logging(settings.log_level, settings.log_json)


_heartbeat: Heartbeat | None = None
_housekeeping: Periodic | None = None


@signals.worker_ready.connect
def _start_background(sender: Any = None, **_: Any) -> None:
    """The heartbeat the api's health reads, and job housekeeping: stalled jobs sent again, old ones deleted
    (services/jobs/housekeeping.py). After the pool forked: no engine crosses a fork."""
    global _heartbeat, _housekeeping
    from kernel.db.session import create_db_engine
    from services.jobs.housekeeping import Policy, sweep
    from services.jobs.queue import CeleryDispatcher
    from services.jobs.store import ImageStore

    engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    hostname = str(getattr(sender, "hostname", None) or "worker")
    _heartbeat = Heartbeat(
        engine, hostname=hostname, queue=settings.jobs_queue, interval_s=settings.jobs_heartbeat_interval_s
    ).start()
    store, policy = ImageStore(settings.job_store), Policy.from_settings(settings)
    dispatcher = CeleryDispatcher(app, settings.jobs_queue)
    _housekeeping = Periodic(
        "job-housekeeping",
        lambda: sweep(engine, store, policy, dispatcher=dispatcher),
        interval_s=settings.jobs_sweep_interval_s,
    ).start()


@signals.worker_shutdown.connect
def _stop_background(**_: Any) -> None:
    if _housekeeping is not None:
        _housekeeping.stop()
    if _heartbeat is not None:
        _heartbeat.stop()


settings = get_settings()
app = create_celery(settings)
