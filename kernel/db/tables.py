"""The database tables, as SQLModel families: ``XBase`` (shared fields), ``X`` (the table), ``XPublic``.

Every schema change goes through an Alembic migration in ``kernel/db/migrations/versions``;
``tests/unit/kernel/db/test_migrations.py`` fails when these classes and the migrations disagree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, LargeBinary, UniqueConstraint, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Named constraints and indexes, so migrations can refer to them on every database.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
# None stored as SQL NULL, not JSON null: so ``IS NULL`` finds the rows without a value.
NullableJson = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """32 hex characters: event ids (idempotent replay) and job ids."""
    return uuid.uuid4().hex


class InferenceLogBase(SQLModel):
    """One image answered (or refused) by an inference route."""

    # Unique per record, made where the record is made, so a replayed spool never duplicates a row.
    event_id: str = Field(default_factory=new_id, max_length=32, unique=True)
    request_id: str | None = Field(default=None, max_length=128, index=True)
    client_id: str | None = Field(default=None, max_length=128, index=True)
    tier: str | None = Field(default=None, max_length=32)
    route: str = Field(max_length=64)  # the route template, e.g. /api/v1/classify
    item_index: int = 0  # position of the image in its request (batch items)
    job_id: str | None = Field(default=None, max_length=32, index=True)  # set for batch-job items
    model: str | None = Field(default=None, max_length=64)
    version: str | None = Field(default=None, max_length=64)
    precision: str | None = Field(default=None, max_length=16)
    status: int  # HTTP status of this image's answer
    latency_ms: float  # the whole request's latency
    cached: bool = False
    # Result summary: top label and score (classify), best box's label and score plus box count
    # (detect), best hit's id and score (search).
    top_label: str | None = Field(default=None, max_length=256)
    top_score: float | None = None
    box_count: int | None = None
    image_sha256: str | None = Field(default=None, max_length=64, index=True)
    image_bytes: int | None = None
    image_width: int | None = None
    image_height: int | None = None
    image_format: str | None = Field(default=None, max_length=16)
    error_type: str | None = Field(default=None, max_length=64)
    # A shadow version's answer to a copy of the request (services/shadow/), never returned to the caller; its
    # agreement with the production row of the same request id and item index, in [0, 1] (None: not compared).
    shadow: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    agreement: float | None = None
    # The A/B experiment that chose the version, and the arm it chose (services/experiments); None outside one.
    experiment: str | None = Field(default=None, max_length=64, index=True)
    arm: str | None = Field(default=None, max_length=64)
    # What the drift monitor compares (services/drift/features.py request_features): image statistics, top label
    # and confidence, the prediction's sketch. Set for answered items only.
    features: dict[str, Any] | None = Field(default=None, sa_type=NullableJson)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp, index=True)


class InferenceLogCreate(InferenceLogBase):
    """A record as the api makes it, buffers it and spools it."""


class InferenceLog(InferenceLogBase, table=True):
    __tablename__ = "inference_log"
    # The drift monitor reads the latest rows of one model (services/drift/monitor.py).
    __table_args__ = (Index("ix_inference_log_model_created_at", "model", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)


class InferenceLogPublic(InferenceLogBase):
    id: int


class JobStatus(StrEnum):
    """Life of a batch job; ``partial`` when some items failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class ItemStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchJobBase(SQLModel):
    """A batch accepted for background processing (the Celery worker fills in progress and results)."""

    task: str = Field(max_length=16)  # classify or detect
    params: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    version: str | None = Field(default=None, max_length=64)  # a pinned model version
    request_id: str | None = Field(default=None, max_length=128, index=True)
    client_id: str | None = Field(default=None, max_length=128, index=True)
    tier: str | None = Field(default=None, max_length=32)


class BatchJobCreate(BatchJobBase):
    pass


class BatchJob(BatchJobBase, table=True):
    __tablename__ = "batch_job"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    status: str = Field(default=JobStatus.QUEUED.value, max_length=16, index=True)
    item_count: int = 0
    succeeded_count: int = 0
    failed_count: int = 0
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp, index=True)
    started_at: datetime | None = Field(default=None, sa_type=Timestamp)
    finished_at: datetime | None = Field(default=None, sa_type=Timestamp)


class BatchJobItemBase(SQLModel):
    """One image of a batch job."""

    item_index: int
    filename: str | None = Field(default=None, max_length=256)
    image_sha256: str | None = Field(default=None, max_length=64)
    # Where the worker reads the image bytes from: a key in the job store (services/jobs/store.py).
    input_uri: str | None = Field(default=None, max_length=1024)
    content_type: str | None = Field(default=None, max_length=128)  # as the client declared it (checked at decode)


class BatchJobItemCreate(BatchJobItemBase):
    pass


class BatchJobItem(BatchJobItemBase, table=True):
    __tablename__ = "batch_job_item"
    __table_args__ = (UniqueConstraint("job_id", "item_index"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    job_id: str = Field(foreign_key="batch_job.id", max_length=32, index=True, ondelete="CASCADE")
    status: str = Field(default=ItemStatus.PENDING.value, max_length=16)
    http_status: int | None = None
    result: dict[str, Any] | None = Field(default=None, sa_type=Json)
    error: dict[str, Any] | None = Field(default=None, sa_type=Json)
    # Workers that started this item and never finished it (killed mid-way); see services/jobs/processing.py.
    attempts: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class BatchJobItemPublic(BatchJobItemBase):
    status: str
    http_status: int | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None


class BatchJobPublic(BatchJobBase):
    id: str
    status: str
    item_count: int
    succeeded_count: int
    failed_count: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items: list[BatchJobItemPublic] = []


class ApiKeyBase(SQLModel):
    """An API key of the gateway (gateway/keys.py); the secret part is kept only as a keyed hash."""

    prefix: str = Field(max_length=16, unique=True)  # the public part, shown in listings and logs
    name: str = Field(max_length=128)
    tier: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    revoked_at: datetime | None = Field(default=None, sa_type=Timestamp)


class ApiKey(ApiKeyBase, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    key_hash: str = Field(max_length=64)  # HMAC-SHA256 of the secret part, hex


class ApiKeyPublic(ApiKeyBase):
    id: int


class JobWorker(SQLModel, table=True):
    """A batch-job worker that is alive: it rewrites ``seen_at`` every few seconds (services/jobs/heartbeat.py)."""

    __tablename__ = "job_worker"

    hostname: str = Field(primary_key=True, max_length=255)  # Celery's node name, e.g. cv-jobs@host
    queue: str = Field(max_length=128)
    started_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp, index=True)


class ExperimentStatus(StrEnum):
    """Life of an A/B experiment: only ``active`` ones assign clients (and only within their window)."""

    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


class ExperimentBase(SQLModel):
    """An A/B experiment over the versions of one model (services/experiments, docs/adr/0010-experiments.md)."""

    model: str = Field(max_length=64, index=True)
    # [{"name": "control", "version": "v1", "weight": 1.0}, ...]: two or more arms, names unique.
    arms: list[dict[str, Any]] = Field(sa_type=Json)
    salt: str = Field(max_length=64)  # keys the assignment hash: a new salt reshuffles every client
    status: str = Field(default=ExperimentStatus.ACTIVE.value, max_length=16)
    start_at: datetime | None = Field(default=None, sa_type=Timestamp)  # None: from creation
    end_at: datetime | None = Field(default=None, sa_type=Timestamp)  # None: until stopped


class Experiment(ExperimentBase, table=True):
    __tablename__ = "experiment"

    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class ExperimentPublic(ExperimentBase):
    id: str
    created_at: datetime
    updated_at: datetime


class FeedbackBase(SQLModel):
    """What a client said of one logged answer: the right label, or whether the answer was right."""

    request_id: str = Field(max_length=128)
    item_index: int = 0
    label: str | None = Field(default=None, max_length=256)  # the correct label, when the client sent one
    correct: bool  # sent as such, or the label compared with the logged top label
    # Copied from the answer's inference-log row, so an experiment's feedback is read without a join.
    experiment: str | None = Field(default=None, max_length=64, index=True)
    arm: str | None = Field(default=None, max_length=64)


class Feedback(FeedbackBase, table=True):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("request_id", "item_index"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class DriftCheckBase(SQLModel):
    """One drift check of a model version: the latest ``window`` logged requests against its reference."""

    model: str = Field(max_length=64)
    version: str | None = Field(default=None, max_length=64)  # None: nothing was logged to compare
    window: int
    n: int  # rows compared
    verdict: str = Field(max_length=32)  # drift, no_drift, insufficient_data
    alpha: float
    tests: list[dict[str, Any]] = Field(default_factory=list, sa_type=Json)  # services/drift/detect.py DriftTest
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class DriftCheck(DriftCheckBase, table=True):
    """Results of the periodic drift check (services/drift/monitor.py); the api exports the latest as gauges."""

    __tablename__ = "drift_check"
    __table_args__ = (Index("ix_drift_check_model_created_at", "model", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)


class GalleryItem(SQLModel, table=True):
    """One gallery image's embedding when the gallery lives in PostgreSQL (services/index/postgres.py).

    ``seq`` is taken from the table's sequence on every write (insert, re-add, removal), so a replica that
    has applied everything up to ``seq`` = n catches up with ``WHERE seq > n``. A removal keeps the row with
    ``deleted`` set, so catch-up sees it; re-adding the id revives the row.
    """

    __tablename__ = "gallery_item"

    seq: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    id: str = Field(max_length=64, unique=True)  # the gallery id clients see
    vector: bytes = Field(sa_type=LargeBinary)  # float32, little-endian, L2-normalised
    dim: int
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=Json)
    embedder: str | None = Field(default=None, max_length=128)  # model:version of the embedding space
    deleted: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
