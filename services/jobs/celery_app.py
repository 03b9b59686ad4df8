"""The job worker's composition root: ``celery -A services.jobs.celery_app worker``.

Builds the worker's Celery app (services/jobs/celery_factory.py) with the task module
(services/jobs/tasks.py) and Celery beat's schedule (the periodic drift check, for the beat a local worker embeds;
production's beat runs services/jobs/celery_beat.py), and starts, once the worker is ready, the heartbeat the
api's health reads and job housekeeping: stalled jobs sent again, old ones deleted (services/jobs/housekeeping.py).
Nothing imports this module but Celery: the api publishes with an app of its own.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from kernel.db.session import create_db_engine
from kernel.logging import configure_logging
from services.config import get_settings
from services.jobs.celery_factory import beat_schedule, create_celery
from services.jobs.heartbeat import Heartbeat
from services.jobs.housekeeping import Policy, sweep
from services.jobs.periodic import Periodic
from services.jobs.queue import CeleryDispatcher
from services.jobs.store import ImageStore
from services.lazy_scipy import stats as scipy_stats
from services.process import configure_heap, trim_heap_if_due

settings = get_settings()
# The pool's children run the drift checks: scipy.stats is imported here, in the worker's main process, before the
# pool forks, so every child shares its pages. Imported on each child's first check instead, it cost every child
# its own 40 MB (benchmarks/reports/memory.md, the soak of 2026-12-05 19:46).
scipy_stats()
app = create_celery(settings, include=["services.jobs.tasks"])
# Sent by the beat a local worker embeds (`worker --beat`); production's beat process runs services/jobs/celery_beat.py.
app.conf.beat_schedule = beat_schedule(settings)


@signals.after_setup_logger.connect
def _json_logs(**_: Any) -> None:
    """The services' JSON logs in the worker (pool processes inherit them), with the job's request id."""
    configure_logging(settings.log_level, settings.log_json)


@signals.worker_init.connect
@signals.worker_process_init.connect
def _heap_policy(**_: Any) -> None:
    """The worker and each pool process give the heap a batch job grew back to the kernel (services/process.py)."""
    configure_heap(settings.malloc_mmap_threshold_bytes, settings.malloc_trim_interval_s)


@signals.task_postrun.connect
def _trim_after_a_task(**_: Any) -> None:
    trim_heap_if_due()


_heartbeat: Heartbeat | None = None
_housekeeping: Periodic | None = None


@signals.worker_ready.connect
def _start_background(sender: Any = None, **_: Any) -> None:
    """The heartbeat and job housekeeping. After the pool forked: no engine crosses a fork."""
    global _heartbeat, _housekeeping
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
