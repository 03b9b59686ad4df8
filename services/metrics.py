"""Every Prometheus metric of the serving processes, defined in one place.

Under ``bentoml serve`` each process writes to the multiprocess directory BentoML sets
up, so any service's ``/metrics`` (and ``GET /api/v1/metrics``) shows all of them.
Labels are route templates, model names and versions, never raw paths or ids.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)

HTTP_REQUESTS = Counter(
    "cv_http_requests_total",
    "Public API requests by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "cv_http_request_duration_seconds",
    "Public API latency by route template.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter(
    "cv_http_errors_total",
    "Problem responses by route template and problem type.",
    ["route", "type"],
)
# Admission control of the inference routes (services/http/admission.py).
ADMISSION_REFUSED = Counter(
    "cv_admission_refused_total",
    "Inference requests refused with 503 overloaded, by route template and reason (full: at once; timeout: after "
    "waiting the queue timeout for a slot).",
    ["route", "reason"],
)
ADMISSION_INFLIGHT = Gauge(
    "cv_admission_inflight",
    "Inference requests holding an admission slot now (summed over api processes).",
    multiprocess_mode="livesum",
)
ADMISSION_LIMIT = Gauge(
    "cv_admission_limit",
    "The adaptive limit of inference requests in flight (summed over api processes).",
    multiprocess_mode="livesum",
)
ADMISSION_WAIT = Histogram(
    "cv_admission_wait_seconds",
    "Time an admitted inference request waited for its slot.",
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_STAGE = Histogram(
    "cv_inference_stage_seconds",
    "Time spent in each stage of the model contract (per batch for predict).",
    ["model", "version", "stage"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "cv_inference_batch_size",
    "Number of images per ONNX Runtime call.",
    ["model", "version"],
    buckets=_BATCH_BUCKETS,
)
INFERENCE_ITEMS = Counter(
    "cv_inference_items_total",
    "Images answered by each model version, by outcome.",
    ["model", "version", "outcome"],
)
INFERENCE_ERRORS = Counter(
    "cv_inference_errors_total",
    "Model failures by error type (a failure may be followed by a fallback).",
    ["model", "version", "type"],
)
FALLBACKS = Counter(
    "cv_model_fallbacks_total",
    "Requests answered by another version or precision than the one first chosen.",
    ["model", "from_version", "to_version"],
)
MODEL_LOADED = Gauge(
    "cv_model_version_loaded",
    "1 when a model version is loaded and runnable, else 0.",
    ["model", "version", "precision"],
    multiprocess_mode="livemax",
)
GALLERY_SIZE = Gauge(
    "cv_gallery_size",
    "Number of images in the similarity-search gallery.",
    multiprocess_mode="livemax",
)

EXPERIMENT_ASSIGNMENTS = Counter(
    "cv_experiment_assignments_total",
    "Requests assigned to an arm of an A/B experiment, by experiment id and arm.",
    ["experiment", "arm"],
)

CACHE_HITS = Counter(
    "cv_cache_hits_total",
    "Result-cache lookups answered from the cache, by model.",
    ["model"],
)
CACHE_MISSES = Counter(
    "cv_cache_misses_total",
    "Result-cache lookups that went to the model, by model.",
    ["model"],
)
CACHE_BACKEND_UP = Gauge(
    "cv_cache_backend_up",
    "1 while the shared cache (Redis) answers, 0 while the in-process fallback serves.",
    ["backend"],
    multiprocess_mode="livemin",
)
INFERENCE_LOG_RECORDS = Counter(
    "cv_inference_log_records_total",
    "Inference-log records by what happened to them: written, spooled, replayed, rejected.",
    ["outcome"],
)
INFERENCE_LOG_SINK_UP = Gauge(
    "cv_inference_log_sink_up",
    "1 while the database takes inference logs, 0 while they spool to a local file.",
    multiprocess_mode="livemin",
)
INFERENCE_LOG_SPOOLED = Gauge(
    "cv_inference_log_spooled_records",
    "Inference-log records waiting in the local spool for the database.",
    multiprocess_mode="livesum",
)

JOBS_SUBMITTED = Counter(
    "cv_jobs_submitted_total",
    "Batch jobs accepted by the api, by task.",
    ["task"],
)
JOB_ITEMS = Counter(
    "cv_job_items_total",
    "Batch-job items answered by the workers (succeeded, failed) or put back for a retry (retried).",
    ["task", "outcome"],
)
JOB_HOUSEKEEPING = Counter(
    "cv_job_housekeeping_total",
    "What the workers' housekeeping did: stalled jobs sent again; orphan image folders, cut-off uploads, expired "
    "jobs deleted.",
    ["action"],
)

# Read from the database by the api when it is scraped (services/jobs/heartbeat.py): the workers have no metrics
# port, and every api replica reports the same numbers, so rules take max() over replicas.
JOB_WORKERS_LIVE = Gauge(
    "cv_job_workers_live",
    "Job workers whose heartbeat is recent (the api reads the job_worker table at scrape time).",
    multiprocess_mode="livemostrecent",
)
JOBS_ACTIVE = Gauge(
    "cv_jobs_active",
    "Batch jobs queued or running (read at scrape time).",
    multiprocess_mode="livemostrecent",
)
JOB_OLDEST_ACTIVE_AGE = Gauge(
    "cv_job_oldest_active_age_seconds",
    "Age of the oldest queued or running batch job, 0 when none (read at scrape time).",
    multiprocess_mode="livemostrecent",
)


# Shadow traffic (services/shadow/): counters and histograms, so replicas add up and PromQL picks the window.
_AGREEMENT_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
SHADOW_REQUESTS = Counter(
    "cv_shadow_requests_total",
    "Images a shadow version answered a copy of, by outcome: compared (with production's answer), incomparable, error.",
    ["model", "version", "outcome"],
)
SHADOW_DROPPED = Counter(
    "cv_shadow_dropped_total",
    "Images not mirrored to the shadow versions because the shadow queue was full.",
    ["model"],
)
SHADOW_AGREEMENT = Histogram(
    "cv_shadow_agreement",
    "Agreement of a shadow version's answer with production's, per image in [0, 1]: top-1 label equal (classifier), "
    "box match rate at IoU 0.5 (detector), cosine of the embeddings (embedder). Mean: rate(_sum) / rate(_count).",
    ["model", "version"],
    buckets=_AGREEMENT_BUCKETS,
)
SHADOW_LATENCY = Histogram(
    "cv_shadow_duration_seconds",
    "Time a shadow version took to answer one mirrored request (a model-service call).",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
# Drift (services/drift/monitor.py): the job worker's periodic check stores its results; the api reads the latest
# of each model from the database when it is scraped, so every replica reports the same numbers (rules take max()).
DRIFT_DETECTED = Gauge(
    "cv_drift_detected",
    "1 when the latest periodic drift check of a model found drift with this test, else 0 (read at scrape time).",
    ["model", "test"],
    multiprocess_mode="livemostrecent",
)
DRIFT_P_VALUE = Gauge(
    "cv_drift_p_value",
    "P-value (after the multiple-testing correction) of each test of the latest drift check; NaN when not run.",
    ["model", "test", "feature"],
    multiprocess_mode="livemostrecent",
)
DRIFT_CHECKED_AT = Gauge(
    "cv_drift_last_check_timestamp_seconds",
    "When the latest periodic drift check of a model ran (Unix time).",
    ["model"],
    multiprocess_mode="livemostrecent",
)
DRIFT_ROWS = Gauge(
    "cv_drift_window_rows",
    "Logged requests the latest periodic drift check of a model compared with its reference.",
    ["model"],
    multiprocess_mode="livemostrecent",
)


def render_metrics(multiproc_dir: str | None) -> tuple[bytes, str]:
    """Render the exposition text for every process (multiprocess mode) or this one."""
    if multiproc_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
