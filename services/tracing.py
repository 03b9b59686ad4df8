"""BentoML's request spans only where something records them.

BentoML wraps every service's app in OpenTelemetry's ASGI middleware. With BentoML's default configuration
(``tracing.sample_rate`` unset, that is 0) no span is ever recorded or exported, yet the middleware still starts and
ends a non-recording span per request and one per message it receives or sends, on the event loop. Skipping them,
measured in two peers.py runs (each the shipped product twice beside it twice with spans on, TECHNICAL.md): classify
at concurrency 16 205 / 209 against 185 / 189 req/s (7.2 against 7.6-8.0 ms of CPU per answer), and 185 / 193
against 177 / 181 in the other run; detect within noise.

So each service's ``tracing`` configuration (:func:`request_spans`) excludes every URL from those spans unless a
sample rate above 0 is configured, for all services (``tracing.sample_rate``) or for this one
(``services.<name>.tracing.sample_rate``), in ``BENTOML_CONFIG`` or ``BENTOML_CONFIG_OPTIONS``: whoever turns
tracing on gets BentoML's spans as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EVERY_URL = ".*"  # OpenTelemetry's exclusion list: regular expressions searched in the request URL


def tracing_configured(config: Mapping[Any, Any], service: str) -> bool:
    """Whether BentoML's configuration ``config`` samples any request of ``service``."""
    rates = (
        (config.get("tracing") or {}).get("sample_rate"),
        (((config.get("services") or {}).get(service) or {}).get("tracing") or {}).get("sample_rate"),
    )
    return any(rate for rate in rates)


def request_spans(service: str) -> dict[str, Any]:
    """The ``tracing`` section of ``@bentoml.service(...)`` for ``service``: every URL excluded from BentoML's
    request spans unless tracing is configured (then nothing: BentoML's configuration as given)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return {} if tracing_configured(BentoMLContainer.config.get(), service) else {"excluded_urls": EVERY_URL}
