"""ServingSettings: the CV_ environment, derived paths, the production guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.config import ServingSettings, Stage, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CV_ variable from the caller's shell leaks into these tests."""
    import os

    for key in list(os.environ):
        if key.startswith("CV_") or key == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(key)


def settings() -> ServingSettings:
    return ServingSettings(_env_file=None)  # type: ignore[call-arg]


def test_defaults() -> None:
    s = settings()
    assert s.environment == "local"
    assert s.log_json is True
    assert s.max_image_bytes == 20 * 1024 * 1024
    assert s.default_versions == {}
    assert s.ort_providers[-1] == "CPUExecutionProvider"
    assert s.prometheus_multiproc_dir is None
    # CPU runs: 4 images at most, for every model unless one is given its own.
    assert [s.cpu_max_batch(m) for m in ("classifier", "detector", "embedder")] == [4, 4, 4]


def test_reads_cv_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CV_MAX_IMAGE_BYTES", "1234")
    monkeypatch.setenv("CV_PREFER_INT8", "false")
    monkeypatch.setenv("CV_DEFAULT_VERSIONS", '{"classifier": "v2"}')
    monkeypatch.setenv("CV_ORT_PROVIDERS", '["CPUExecutionProvider"]')
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/prom")
    monkeypatch.setenv("CV_ORT_CPU_MAX_BATCH", "8")
    monkeypatch.setenv("CV_ORT_CPU_MAX_BATCH_PER_MODEL", '{"detector": 1}')
    monkeypatch.setenv("MAX_IMAGE_BYTES", "1")  # unprefixed: ignored
    s = settings()
    assert s.data_dir == tmp_path
    assert s.max_image_bytes == 1234
    assert s.prefer_int8 is False
    assert s.default_versions == {"classifier": "v2"}
    assert s.ort_providers == ["CPUExecutionProvider"]
    assert s.prometheus_multiproc_dir == "/tmp/prom"
    assert (s.cpu_max_batch("classifier"), s.cpu_max_batch("detector")) == (8, 1)


def test_gallery_path_is_inside_data_dir(tmp_path: Path) -> None:
    s = ServingSettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.gallery_path == tmp_path / "gallery.sqlite3"


def test_tensorrt_provider_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = ServingSettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert (s.ort_trt_fp16, s.ort_trt_int8) == (True, False)
    assert s.tensorrt_cache_dir == tmp_path / "tensorrt"
    monkeypatch.setenv("CV_ORT_TRT_FP16", "false")
    monkeypatch.setenv("CV_ORT_TRT_INT8", "true")
    assert (settings().ort_trt_fp16, settings().ort_trt_int8) == (False, True)


def test_production_requires_json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_LOG_JSON", "false")
    with pytest.raises(ValidationError, match="production logs must be JSON"):
        settings()


def test_production_with_json_logs_and_servers_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://cv:s3cret-from-vault@db:5432/cv")
    monkeypatch.setenv("CV_REDIS_URL", "redis://redis:6379/0")
    s = settings()
    assert s.environment == "production" and s.migrate_on_start is False
    assert s.gallery_store == "postgres"  # replicas share one gallery in production
    monkeypatch.setenv("CV_GALLERY_BACKEND", "sqlite")
    assert settings().gallery_store == "sqlite"


def test_models_run_in_the_api_on_one_box_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().models_in_process is None
    assert settings().run_models_in_process is True  # `make serve`: local mode, no model URL (ADR 0014)
    monkeypatch.setenv("CV_MODELS_IN_PROCESS", "false")
    assert settings().run_models_in_process is False  # `bentoml serve` starts the model services beside the api


def test_model_urls_or_production_mean_model_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_DETECTOR_URL", "http://detector:3000")
    s = settings()
    assert s.model_urls == {"detector": "http://detector:3000"} and s.run_models_in_process is False
    monkeypatch.delenv("CV_DETECTOR_URL")
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://cv:s3cret-from-vault@db:5432/cv")
    monkeypatch.setenv("CV_REDIS_URL", "redis://redis:6379/0")
    assert settings().run_models_in_process is False  # production deploys the model services apart
    monkeypatch.setenv("CV_MODELS_IN_PROCESS", "true")
    assert settings().run_models_in_process is True  # asked for: one production box


def test_models_in_process_with_model_urls_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_MODELS_IN_PROCESS", "true")
    monkeypatch.setenv("CV_CLASSIFIER_URL", "http://classifier:3000")
    with pytest.raises(ValidationError, match="would never be called"):
        settings()


def test_production_behind_the_gateway_needs_its_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://cv:s3cret-from-vault@db:5432/cv")
    monkeypatch.setenv("CV_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("CV_TRUST_GATEWAY_HEADERS", "true")
    with pytest.raises(ValidationError, match="CV_GATEWAY_SIGNING_SECRET"):
        settings()
    monkeypatch.setenv("CV_GATEWAY_SIGNING_SECRET", "changethis")
    with pytest.raises(ValidationError, match="CV_GATEWAY_SIGNING_SECRET"):
        settings()
    monkeypatch.setenv("CV_GATEWAY_SIGNING_SECRET", "a-long-random-signing-secret")
    assert settings().gateway_signature_required == "a-long-random-signing-secret"
    monkeypatch.setenv("CV_AUTH_IN_PROCESS", "true")  # the gateway in the api's own process: nothing to check
    assert settings().gateway_signature_required is None


@pytest.mark.parametrize("missing", ["CV_DATABASE_URL", "CV_REDIS_URL"])
def test_production_refuses_the_embedded_defaults(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_DATABASE_URL", "postgresql://cv:s3cret@db/cv")
    monkeypatch.setenv("CV_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.delenv(missing)
    with pytest.raises(ValidationError, match="production needs CV_DATABASE_URL"):
        settings()


@pytest.mark.parametrize(
    ("database", "redis"),
    [
        ("postgresql://postgres:postgres@db/cv", "redis://redis/0"),
        ("postgresql://cv:x9@db/cv", "redis://:changethis@r/0"),
    ],
)
def test_production_refuses_default_passwords(monkeypatch: pytest.MonkeyPatch, database: str, redis: str) -> None:
    monkeypatch.setenv("CV_ENVIRONMENT", "production")
    monkeypatch.setenv("CV_DATABASE_URL", database)
    monkeypatch.setenv("CV_REDIS_URL", redis)
    with pytest.raises(ValidationError, match="default password"):
        settings()


def test_data_plane_defaults_need_no_server(tmp_path: Path) -> None:
    s = ServingSettings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'cv.sqlite3'}"
    assert s.redis_url is None and s.migrate_on_start is True
    assert s.spool_dir == tmp_path / "spool"
    assert s.trust_gateway_headers is False


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_use_psycopg_3(scheme: str) -> None:
    s = ServingSettings(_env_file=None, database_url=f"{scheme}://u@h:5432/d")  # type: ignore[call-arg]
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h:5432/d"
    other = ServingSettings(_env_file=None, database_url="sqlite:////tmp/x.db", db_migrate_on_start=False)  # type: ignore[call-arg]
    assert other.sqlalchemy_url == "sqlite:////tmp/x.db" and other.migrate_on_start is False


def test_local_may_use_plain_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_LOG_JSON", "false")
    assert settings().log_json is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CV_ENVIRONMENT", "staging"),
        ("CV_MAX_IMAGE_BYTES", "0"),
        ("CV_MAX_BATCH_ITEMS", "-1"),
        ("CV_ORT_CPU_MAX_BATCH_PER_MODEL", '{"detector": 0}'),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        settings()


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    get_settings.cache_clear()
    try:
        first = get_settings()
        assert get_settings() is first
        monkeypatch.setenv("CV_DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        assert get_settings().data_dir == tmp_path
    finally:
        get_settings.cache_clear()


def test_stage_values() -> None:
    assert [s.value for s in Stage] == ["production", "canary", "shadow", "archived"]
    assert Stage("canary") is Stage.CANARY
