"""The batch jobs' settings: broker, job store, retries, housekeeping, the embedded worker. Part of
:class:`services.config.ServingSettings` (``CV_`` environment variables, e.g. ``CV_JOBS_BROKER_URL``); nothing reads
this class alone.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class JobSettings(BaseModel):
    """The batch jobs' fields of the serving settings."""

    # Batch jobs (docs/adr/0005-job-broker.md). Unset broker: Redis at CV_REDIS_URL in production; in local mode
    # a SQLite file under data_dir through services/jobs/broker.py, which needs no server.
    jobs_broker_url: str | None = None  # e.g. redis://host:6379/1
    jobs_queue: str = "cv-jobs"
    # Where uploaded job images wait for the worker (content-addressed); unset: data_dir/jobs. A folder both
    # the api and the workers mount.
    job_store_dir: Path | None = None
    job_max_items: int = Field(default=10_000, gt=0)  # images in one job
    job_max_request_bytes: int = Field(default=2 * 1024**3, gt=0)  # body of one POST /batch that becomes a job
    jobs_chunk_size: int = Field(default=8, gt=0)  # images per task (one model-service call)
    # Transient failures (model service unavailable, connection errors): retried with exponential backoff.
    jobs_max_retries: int = Field(default=5, ge=0)
    jobs_retry_backoff_s: float = Field(default=1.0, gt=0)
    jobs_retry_backoff_max_s: float = Field(default=60.0, gt=0)
    # An image whose processing killed the worker this many times fails alone instead of being tried again.
    jobs_max_worker_losses: int = Field(default=3, gt=0)
    # A message delivered to a worker that died unacknowledged goes back to the queue after this long.
    jobs_visibility_timeout_s: float = Field(default=300.0, gt=0)
    jobs_poll_interval_s: float = Field(default=0.5, gt=0)  # the local broker is polled
    jobs_worker_concurrency: int = Field(default=2, gt=0)
    # Housekeeping (services/jobs/housekeeping.py), run by every worker every jobs_sweep_interval_s: jobs stalled for
    # twice the visibility timeout with an empty queue (lost messages) are sent again; rows of jobs that ended more
    # than jobs_retention_days ago are deleted (0: kept for ever; their inference-log rows stay), and so are job image
    # folders nothing will read again and cut-off uploads, once older than jobs_orphan_grace_s.
    jobs_retention_days: float = Field(default=30.0, ge=0)
    jobs_sweep_interval_s: float = Field(default=300.0, gt=0)
    jobs_orphan_grace_s: float = Field(default=3600.0, gt=0)
    # Workers write a heartbeat this often; health counts one dead after 3 missed beats.
    jobs_heartbeat_interval_s: float = Field(default=10.0, gt=0)
    # The api starts (and stops) a worker beside itself; unset: on in local mode.
    jobs_embedded_worker: bool | None = None
