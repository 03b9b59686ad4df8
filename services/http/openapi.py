"""The published OpenAPI document: FastAPI's spec of the public routes, made into this API's own.

FastAPI writes the paths and the body schemas; :func:`build_spec` adds what a user of the Swagger UI and
of generated clients needs and FastAPI cannot know: the API's name, version and description, the API-key
security scheme (so "Authorize" works through the gateway), every error each route can answer as
``application/problem+json`` with an example per problem type, and a request and response example per
route taken from real answers (``openapi_examples.json``, written by ``make openapi`` from the real models).

The same document is served at ``/docs.json`` (the Swagger UI at ``/``, services/http/pages.py),
at ``/api/v1/openapi.json``, and committed as ``docs/openapi.json``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kernel.errors import ERRORS_BY_SLUG, PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE, ServiceError
from services.http.paths import API_PREFIX, IN_PROCESS_PUBLIC_PATHS, SIGNATURE_EXEMPT_PATHS

TITLE = "Computer-vision API"
EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")
DESCRIPTION = """\
Image classification (EfficientNet-Lite0 fine-tuned on Tiny-ImageNet, 200 classes), object detection
(YOLOX-Nano, 80 COCO classes) and image similarity search over a gallery, served as BentoML services
over ONNX Runtime (INT8 by default, FP32 as fallback). Small batches are answered inline; large ones
become batch jobs.

**Authentication.** Behind the gateway every route but this document, `/health` and `/metrics` needs an
API key: `Authorization: Bearer <key>` or `X-API-Key: <key>` (press *Authorize*). Keys belong to a tier
(free, pro, enterprise) that sets the rate limits; answers carry `RateLimit-*` headers and a refusal is
a 429 with `Retry-After`. `make serve` on a laptop runs without keys.

**Errors** are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json` bodies with a
stable `type`, a `detail` and the `request_id` to quote; each route lists the ones it can answer.

**Versions.** Every answer names the model version that produced it; pass `version` to pin one.

Documentation: `docs/api.md` (every route, the error catalogue), `docs/deployment.md`, `docs/mlops.md`.
"""
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key."},
}
PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "An RFC 9457 problem; extension members (`errors`, `limit`, ...) may follow.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": "A stable URI naming the problem type."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
}
# Problem types the app's own handlers answer (services/http/app.py), beside the registered errors.
FRAMEWORK_PROBLEMS = (
    ("method-not-allowed", 405, "Method not allowed", "Use a method the route's entry in this document lists."),
)


def package_version() -> str:
    """The installed package's version (pyproject.toml), which the spec publishes."""
    try:
        return metadata.version("cv-api")
    except metadata.PackageNotFoundError:  # run from a source tree without installing it
        return "0.0.0+source"


def problem_types(extra: Iterable[type[ServiceError]] = ()) -> list[dict[str, Any]]:
    """Every problem type the API can answer: slug, status, title, when it happens, what to do."""
    types = {
        cls.type_slug: {
            "slug": cls.type_slug,
            "status": cls.status_code,
            "title": cls.title,
            "when": " ".join((cls.__doc__ or cls.title).split()),
            "remedy": cls.remedy,
        }
        for cls in (*ERRORS_BY_SLUG.values(), *extra)
    }
    for slug, status, title, remedy in FRAMEWORK_PROBLEMS:
        types[slug] = {"slug": slug, "status": status, "title": title, "when": title, "remedy": remedy}
    return sorted(types.values(), key=lambda t: (t["status"], t["slug"]))


def _body_fields(spec: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
        schema = media.get("schema") or {}
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        fields |= set(schema.get("properties") or {})
    return fields


def _statuses(path: str, operation: dict[str, Any], body_fields: set[str]) -> set[int]:
    """The error statuses one route can answer."""
    statuses = {500, 503}
    full = API_PREFIX + path
    if full not in IN_PROCESS_PUBLIC_PATHS and full not in SIGNATURE_EXEMPT_PATHS:
        statuses |= {401, 403, 429}
    if "requestBody" in operation or operation.get("parameters"):
        statuses.add(422)
    if "multipart/form-data" in (operation.get("requestBody") or {}).get("content", {}):
        statuses |= {400, 413, 415}
    if (
        "{" in path
        or "version" in body_fields
        or any(p.get("name") == "version" for p in operation.get("parameters", []))
    ):
        statuses.add(404)
    return statuses


def _error_response(status: int, types: list[dict[str, Any]], path: str) -> dict[str, Any]:
    matching = [t for t in types if t["status"] == status]
    examples = {
        t["slug"]: {
            "summary": t["title"],
            "value": {
                "type": PROBLEM_TYPE_BASE + t["slug"],
                "title": t["title"],
                "status": status,
                "detail": t["when"],
                "instance": API_PREFIX + path,
                "request_id": "3f2a9c0d5e7b4a61",
            },
        }
        for t in matching
    }
    description = "; ".join(f"`{t['slug']}`: {t['title']}" for t in matching) or "Error"
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}, "examples": examples}},
    }


def _add_examples(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    if not examples:
        return
    if "request" in examples and "requestBody" in operation:
        content = operation["requestBody"]["content"]
        for media in content.values():
            media["example"] = examples["request"]
    for status, body in examples.get("responses", {}).items():
        response = operation["responses"].get(status)
        if response is None:
            continue
        for media_type, media in (response.get("content") or {}).items():
            if media_type == "application/json":
                media["example"] = body


def load_examples(path: Path = EXAMPLES_FILE) -> dict[str, dict[str, Any]]:
    """``{"METHOD /path": {"request": ..., "responses": {"200": ...}}}`` recorded by ``make openapi``."""
    if not path.is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


def build_spec(
    app: FastAPI, *, extra_errors: Iterable[type[ServiceError]] = (), examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The API's OpenAPI document (3.1), paths relative to the ``/api/v1`` server."""
    spec = get_openapi(
        title=TITLE,
        version=package_version(),
        description=DESCRIPTION,
        routes=app.routes,
        servers=[{"url": API_PREFIX, "description": "this server"}],
    )
    spec = copy.deepcopy(spec)
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).setdefault("Problem", PROBLEM_SCHEMA)  # services/http/schemas.py's, if used
    for unused in ("HTTPValidationError", "ValidationError"):  # every 422 is a problem, not FastAPI's body
        components["schemas"].pop(unused, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    types = problem_types(extra_errors)
    examples = load_examples() if examples is None else examples
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(path, operation, _body_fields(spec, operation))):
                if status == 422 or str(status) not in responses:  # a route's own declared answer stays
                    responses[str(status)] = _error_response(status, types, path)
            if {401, 403} & {int(s) for s in responses if s.isdigit()}:
                operation["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
            _add_examples(operation, examples.get(f"{method.upper()} {path}", {}))
    return spec


def install_spec(app: FastAPI, *, extra_errors: Iterable[type[ServiceError]] = ()) -> None:
    """Make ``app.openapi()`` (``/api/v1/openapi.json``) answer :func:`build_spec`'s document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_spec(app, extra_errors=extra_errors)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
