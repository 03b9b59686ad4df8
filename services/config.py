"""Settings for the serving processes (api and model services).

One settings class per process kind (STYLE.md, habit 1); nothing else reads ``os.environ``.
Every field is read from an environment variable with the ``CV_`` prefix, e.g.
``CV_MODEL_MIRROR_DIR``.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.credentials import DEFAULT_PASSWORDS, weak_signing_secret
from kernel.db.url import sqlalchemy_database_url
from kernel.paths import REPO_ROOT
from services.config_jobs import JobSettings
from services.config_runtime import RuntimeSettings


class Stage(StrEnum):
    """Deployment stage of a model version; production serves by default."""

    PRODUCTION = "production"
    CANARY = "canary"
    SHADOW = "shadow"
    ARCHIVED = "archived"


class ServingSettings(BaseSettings, RuntimeSettings, JobSettings):
    """Settings shared by the api service and the model services.

    How a process runs its models and its HTTP server (ONNX Runtime, batching, the heap) is in
    :class:`~services.config_runtime.RuntimeSettings`, the batch jobs' in :class:`~services.config_jobs.JobSettings`:
    the same environment variables, read by this one class.
    """

    model_config = SettingsConfigDict(env_prefix="CV_", env_file=".env", extra="ignore")

    environment: Literal["local", "production"] = "local"
    log_level: str = "INFO"
    log_json: bool = True

    # Where model files come from. In production a download script fills it from the
    # official sources; here it points at ../shared/models.
    model_mirror_dir: Path = REPO_ROOT.parent / "shared" / "models"
    # Data sets (Tiny-ImageNet, COCO128) as unpacked or as shipped (tarballs + unpack.sh).
    datasets_mirror_dir: Path = REPO_ROOT.parent / "shared" / "datasets"
    # ONNX exports made by training/ and committed to the repository.
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    # Runtime state in local mode: the gallery's vector store.
    data_dir: Path = REPO_ROOT / ".data"

    # Input limits, checked before any model runs.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_batch_items: int = Field(default=16, gt=0)

    # Where the models run (docs/adr/0014-models-in-the-api-process-on-one-box.md). True: in the api process, one
    # ONNX Runtime session per model, concurrent calls micro-batched (no model services, no api -> model hop).
    # False: `bentoml serve` starts a service per model beside the api, or the api reaches those at the URLs below.
    # Unset: true in local mode when no model URL is set (`make serve`), false otherwise (production, deployed apart);
    # read it through `run_models_in_process`.
    models_in_process: bool | None = None
    # Model services deployed apart; left unset, `bentoml serve` runs them beside the api.
    classifier_url: str | None = None
    detector_url: str | None = None
    embedder_url: str | None = None

    # Optional default-version pins, e.g. {"classifier": "v1"}; otherwise the stage label decides.
    default_versions: dict[str, str] = Field(default_factory=dict)
    # Largest number of versions of one model held in memory at once.
    max_loaded_versions: int = Field(default=3, gt=0)
    # Prefer an INT8 file when a model entry has one (falls back to FP32 on failure).
    prefer_int8: bool = True

    # Admission control of the api's inference routes (services/http/admission.py, benchmarks/reports/overload.md):
    # a limit of requests per api process run at once; others wait for a slot up to the queue timeout, or are
    # refused at once (503 overloaded, Retry-After) when the expected wait is longer than that. The limit moves
    # between min and max (AIMD) to keep a request's time in its slot under the target (0: fixed at max).
    admission_enabled: bool = True
    admission_max_inflight: int = Field(default=32, gt=0)
    admission_min_inflight: int = Field(default=16, gt=0)  # a full batch (CV_MAX_BATCH_SIZE): batching must pay
    admission_target_ms: int = Field(default=1000, ge=0)
    admission_queue_timeout_ms: int = Field(default=50, ge=0)  # so every refusal leaves within 50 ms
    # Retry-After of a refusal: at least this; under sustained overload up to the max (refused per admitted).
    admission_retry_after_s: int = Field(default=1, gt=0)
    admission_retry_after_max_s: int = Field(default=30, gt=0)

    # Embedding dimensionality of the gallery index; unset: the stored vectors', or the first embedder's
    # (1280 for embedder v1's pooled features, 200 for the Tiny-ImageNet embedders' class probabilities).
    gallery_dim: int | None = None
    # Where the gallery lives (docs/adr/0012-gallery-in-postgresql.md): "sqlite", one file per process
    # (local mode); "postgres", one table in CV_DATABASE_URL shared by every embedder replica, kept in step
    # by LISTEN/NOTIFY. Unset: "postgres" in production, "sqlite" otherwise.
    gallery_backend: Literal["sqlite", "postgres"] | None = None
    # The in-memory index: exact below this many vectors, HNSW from it on (benchmarks/reports/gallery.md).
    gallery_hnsw_threshold: int = Field(default=20_000, gt=0)
    gallery_hnsw_m: int = Field(default=32, gt=1)
    gallery_hnsw_ef_construction: int = Field(default=200, gt=0)
    gallery_hnsw_ef_search: int = Field(default=256, gt=0)
    # HNSW cannot delete: removals are tombstones until they pass this fraction of the graph, then it is rebuilt.
    gallery_tombstone_fraction: float = Field(default=0.1, gt=0, le=1)
    # PostgreSQL gallery: seconds between catch-ups that recover a missed notification.
    gallery_catchup_interval_s: float = Field(default=5.0, gt=0)

    # Data plane (docs/adr/0004-data-plane.md). Left unset, local mode needs no server: SQLite under
    # data_dir for the inference logs and an in-process result cache.
    database_url: str | None = None  # e.g. postgresql://user:pass@host:5432/db (psycopg 3)
    # Apply Alembic migrations when the api starts; unset: on in local mode, off in production.
    db_migrate_on_start: bool | None = None
    db_connect_timeout_s: int = Field(default=3, gt=0)
    redis_url: str | None = None  # e.g. redis://host:6379/0; unset: in-process cache
    redis_timeout_s: float = Field(default=0.5, gt=0)
    cache_enabled: bool = True
    cache_ttl_s: int = Field(default=3600, gt=0)
    cache_memory_items: int = Field(default=4096, gt=0)
    cache_prefix: str = "cv:result:"
    # How long the api trusts what it last heard of a model's default version (0: ask every time).
    cache_version_ttl_s: float = Field(default=1.0, ge=0)
    # Seconds between attempts to reach Redis or the database again after a failure.
    reconnect_interval_s: float = Field(default=5.0, gt=0)
    # Inference-log writes are buffered and flushed in bulk: at this many records or this often.
    log_buffer_size: int = Field(default=256, gt=0)
    log_flush_interval_s: float = Field(default=1.0, gt=0)
    # The gateway's X-Client-Id, X-Tier, X-Tier-Max-* and RateLimit-* headers are read (and the caller's tier
    # limits applied) only when the gateway in front sets them and strips the caller's: behind Traefik.
    trust_gateway_headers: bool = False
    # With the headers trusted behind Traefik: the secret the auth service signs them with (kernel/signing.py);
    # protected routes then refuse requests without a valid signature. Required in production behind Traefik.
    gateway_signing_secret: SecretStr | None = None
    # Local mode without Traefik: run the gateway's policy (API keys, tiers, rate limits) inside the api process,
    # configured by the CV_GATEWAY_* settings (gateway/config.py); keys in this database unless those say otherwise.
    auth_in_process: bool = False

    # Shadow traffic (docs/adr/0011-shadow-traffic.md): once a request has been answered, a copy of it goes to
    # every version in stage shadow (learnt from the model services' status every shadow_refresh_s), through a
    # queue of shadow_queue_size requests and shadow_queue_mb of pixels that drops (and counts) what does not fit,
    # worked by shadow_concurrency tasks. The shadow's answers are logged and compared with production's, never
    # returned. A shadow adds its own runs to the model services' load: shadow_sample_rate mirrors that share.
    shadow_enabled: bool = True
    shadow_sample_rate: float = Field(default=1.0, ge=0, le=1)
    shadow_queue_size: int = Field(default=64, gt=0)
    shadow_queue_mb: int = Field(default=256, gt=0)  # decoded pixels the queued copies may hold
    shadow_refresh_s: float = Field(default=10.0, gt=0)
    shadow_concurrency: int = Field(default=1, gt=0)
    # A/B experiments (docs/adr/0010-experiments.md): how often the api reads the running experiments again.
    experiments_refresh_s: float = Field(default=5.0, gt=0)
    # Drift detection (services/drift/monitor.py, docs/mlops.md). Every drift_interval_s the job worker's Celery beat
    # (the embedded worker's locally, a beat process in production) compares the latest drift_window answered
    # requests of each model with the reference profile of the version most of them ran, in drift_reference_dir
    # (<model>-<version>.json); fewer than drift_min_rows rows: insufficient_data. GET /api/v1/drift/{model} runs
    # the same check on demand, with a window of at most drift_max_window.
    drift_enabled: bool = True
    drift_interval_s: float = Field(default=900.0, gt=0)
    drift_window: int = Field(default=1000, gt=0)
    drift_max_window: int = Field(default=10_000, gt=0)
    drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    drift_min_rows: int = Field(default=100, gt=0)
    drift_permutations: int = Field(default=500, gt=0)  # of the MMD permutation test
    drift_reference_dir: Path = REPO_ROOT / "artifacts" / "drift"

    # Set by `bentoml serve` for Prometheus' multiprocess mode (read here, not elsewhere).
    prometheus_multiproc_dir: str | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    # Set by `bentoml serve` in the processes it starts: where each model service listens. The embedded job
    # worker inherits it from the api and calls the model services there.
    bentoml_runner_map: dict[str, str] = Field(default_factory=dict, validation_alias="BENTOML_RUNNER_MAP")

    @model_validator(mode="after")
    def _check_production(self) -> ServingSettings:
        if self.environment != "production":
            return self
        if not self.log_json:
            raise ValueError("production logs must be JSON (CV_LOG_JSON=true)")
        # Replicas share state: embedded SQLite and a per-process cache are local-mode defaults only.
        if not self.database_url or not self.redis_url:
            raise ValueError("production needs CV_DATABASE_URL (PostgreSQL) and CV_REDIS_URL")
        for url in (self.database_url, self.redis_url, self.jobs_broker_url):
            if url and urlsplit(url).password in DEFAULT_PASSWORDS:
                raise ValueError(f"refusing a default password in {urlsplit(url).scheme} URL outside local mode")
        if self.behind_traefik and weak_signing_secret(self.gateway_signing_secret):
            raise ValueError("behind the gateway, production needs CV_GATEWAY_SIGNING_SECRET (16+ characters)")
        return self

    @model_validator(mode="after")
    def _check_gallery(self) -> ServingSettings:
        if self.gallery_store == "postgres" and not (self.database_url or "").startswith(("postgresql", "postgres:")):
            raise ValueError("the PostgreSQL gallery (CV_GALLERY_BACKEND=postgres) needs a PostgreSQL CV_DATABASE_URL")
        return self

    @model_validator(mode="after")
    def _check_model_placement(self) -> ServingSettings:
        if self.models_in_process and self.model_urls:
            raise ValueError(
                "CV_MODELS_IN_PROCESS=true runs the models in the api, so the model services at "
                f"{', '.join(self.model_urls)} would never be called: unset one or the other"
            )
        return self

    @property
    def model_urls(self) -> dict[str, str]:
        """The ``CV_<MODEL>_URL`` settings that are set: model services deployed apart."""
        urls = {"classifier": self.classifier_url, "detector": self.detector_url, "embedder": self.embedder_url}
        return {name: url for name, url in urls.items() if url}

    @property
    def run_models_in_process(self) -> bool:
        """Whether the api runs the models itself: as set, else in local mode without model URLs (ADR 0014)."""
        if self.models_in_process is not None:
            return self.models_in_process
        return self.environment == "local" and not self.model_urls

    @property
    def gateway_headers_trusted(self) -> bool:
        """Whether the gateway's headers on a request come from the gateway (Traefik in front, or in process)."""
        return self.trust_gateway_headers or self.auth_in_process

    @property
    def behind_traefik(self) -> bool:
        """The gateway's headers come from another process (Traefik's ForwardAuth), not the in-process gateway."""
        return self.trust_gateway_headers and not self.auth_in_process

    @property
    def gateway_signature_required(self) -> str | None:
        """The secret to check the gateway's signature with: behind Traefik with a secret set, else None."""
        if not self.behind_traefik or self.gateway_signing_secret is None:
            return None
        return self.gateway_signing_secret.get_secret_value()

    @property
    def gallery_store(self) -> Literal["sqlite", "postgres"]:
        """Which gallery store this process uses: ``gallery_backend``, else PostgreSQL in production only."""
        if self.gallery_backend is not None:
            return self.gallery_backend
        return "postgres" if self.environment == "production" else "sqlite"

    @property
    def gallery_path(self) -> Path:
        """SQLite file that holds the gallery embeddings and metadata."""
        return self.data_dir / "gallery.sqlite3"

    @property
    def sqlalchemy_url(self) -> str:
        """The inference-log database as SQLAlchemy wants it: psycopg 3 for PostgreSQL, SQLite by default."""
        return sqlalchemy_database_url(self.database_url, self.data_dir)

    @property
    def migrate_on_start(self) -> bool:
        """Whether the api applies migrations at start-up (local mode unless said otherwise)."""
        return self.environment == "local" if self.db_migrate_on_start is None else self.db_migrate_on_start

    @property
    def spool_dir(self) -> Path:
        """Where inference logs wait, as JSON lines, while the database is unreachable."""
        return self.data_dir / "spool"

    @property
    def broker_url(self) -> str:
        """The Celery broker: the configured one, Redis in production, or SQLite under data_dir."""
        if self.jobs_broker_url:
            return self.jobs_broker_url
        if self.environment == "production" and self.redis_url:
            return self.redis_url
        return f"cvsql+sqlite:///{self.data_dir / 'broker.sqlite3'}"

    @property
    def job_store(self) -> Path:
        """The folder holding uploaded job images."""
        return self.job_store_dir or self.data_dir / "jobs"

    @property
    def embedded_worker(self) -> bool:
        """Whether the api runs a job worker beside itself (local mode unless said otherwise)."""
        return self.environment == "local" if self.jobs_embedded_worker is None else self.jobs_embedded_worker

    @property
    def beat_schedule_path(self) -> Path:
        """Where the embedded worker's Celery beat remembers when each periodic task last ran."""
        return self.data_dir / "celerybeat-schedule"

    @property
    def tensorrt_cache_dir(self) -> Path:
        """Where ONNX Runtime's TensorRT provider keeps the engines it built (rebuilding takes minutes)."""
        return self.data_dir / "tensorrt"


@lru_cache
def get_settings() -> ServingSettings:
    """Return the process-wide settings, read once from the environment."""
    return ServingSettings()
