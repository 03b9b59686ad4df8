"""Where the public API lives, which of its paths are open, and how a request's route is named."""

from __future__ import annotations

from starlette.types import Scope

API_PREFIX = "/api/v1"
# Without Traefik, what it publishes without a key: the spec; and Prometheus scrapes /metrics directly.
IN_PROCESS_PUBLIC_PATHS = frozenset({f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/metrics"})
# Behind Traefik, what reaches a replica without ForwardAuth: the spec (public), the load balancer's health
# check and Prometheus. Everything else must carry the gateway's signature when one is configured.
SIGNATURE_EXEMPT_PATHS = IN_PROCESS_PUBLIC_PATHS | {f"{API_PREFIX}/health"}


def route_template(scope: Scope) -> str:
    """The matched route's template under the prefix (``/api/v1/jobs/{job_id}``), or ``unmatched``.

    Known once the router has matched (it writes ``route`` into the shared scope), so middleware reads it
    after the app has run.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    return f"{API_PREFIX}{path}" if path else "unmatched"
