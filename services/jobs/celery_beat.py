"""Celery beat's app: the job worker's broker, queue and schedule, without its task modules.

``celery --app services.jobs.celery_beat beat`` (the production topology's one beat process) publishes each periodic
task by name (``beat_schedule``) for a worker to run; it never runs one. Loaded through services/jobs/celery_app.py,
beat imported the task modules and all they need (the model contract, the job processing, the drift checks): 35 MB
of its own memory (USS) for code it never calls (docs/adr/0017-service-modules-import-lightly.md). The local job
worker's embedded beat (``worker --beat``) keeps the worker's app: it is one process with the worker.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from kernel.logging import configure_logging
from services.config import get_settings
from services.jobs.celery_factory import beat_schedule, create_celery

settings = get_settings()
app = create_celery(settings)
app.conf.beat_schedule = beat_schedule(settings)


@signals.after_setup_logger.connect
def _json_logs(**_: Any) -> None:
    """The services' JSON logs, as the worker writes them."""
    configure_logging(settings.log_level, settings.log_json)
