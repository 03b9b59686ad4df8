"""BentoML's request spans: skipped unless tracing is configured, for every service; as configured otherwise."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from services.tracing import EVERY_URL, request_spans, tracing_configured

URL = "http://127.0.0.1:3000/api/v1/classify"


@pytest.fixture
def bentoml_config() -> Iterator[Any]:
    """BentoML's configuration container, restored after the test (inject_config rewrites it)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    saved = copy.deepcopy(BentoMLContainer.config.get())
    yield BentoMLContainer
    BentoMLContainer.config.set(saved)


@pytest.mark.parametrize(
    ("config", "configured"),
    [
        ({}, False),
        ({"tracing": {"sample_rate": None}}, False),
        ({"tracing": {"sample_rate": 0.0}, "services": {"api": {"tracing": {"sample_rate": 0}}}}, False),
        ({"tracing": {"sample_rate": 0.1}}, True),
        ({"services": {"api": {"tracing": {"sample_rate": 1.0}}}}, True),
        ({"services": {"classifier": {"tracing": {"sample_rate": 1.0}}}}, False),  # another service's
        ({"services": {"api": None}, "tracing": None}, False),
    ],
)
def test_tracing_is_configured_by_a_sample_rate_above_zero(config: dict[str, Any], configured: bool) -> None:
    assert tracing_configured(config, "api") is configured


def test_unless_configured_every_url_is_excluded(bentoml_config: Any) -> None:
    bentoml_config.config.tracing.sample_rate.set(None)
    assert request_spans("api") == {"excluded_urls": EVERY_URL}
    bentoml_config.config.tracing.sample_rate.set(0.25)
    assert request_spans("api") == {}


@pytest.mark.parametrize("target", ["services.api:Api", "services.classifier:ClassifierService"])
def test_a_served_service_makes_no_request_span(target: str, bentoml_config: Any) -> None:
    """What BentoML's worker does before it builds the app: the service's configuration merged into BentoML's, then
    the exclusion list its OpenTelemetry middleware is given."""
    module, name = target.split(":")
    service = getattr(importlib.import_module(module), name)
    assert service.config["tracing"] == {"excluded_urls": EVERY_URL}
    service.inject_config()
    excluded = bentoml_config.tracing_excluded_urls.get()
    assert excluded.url_disabled(URL)
    assert excluded.url_disabled("http://127.0.0.1:3000/healthz")
