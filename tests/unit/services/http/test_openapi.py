"""The published spec: this API's name and version, the key scheme, every error as a problem, examples."""

from __future__ import annotations

from typing import Any

import pytest

import kernel.errors
import services.api  # noqa: F401  (every router and error class is imported)
from gateway.errors import GATEWAY_ERRORS
from kernel.errors import ERRORS_BY_SLUG, PROBLEM_CONTENT_TYPE, ServiceError
from services.config import get_settings
from services.http.app import create_app
from services.http.openapi import TITLE, build_spec, install_spec, package_version, problem_types


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(get_settings(), backend=lambda: None)  # type: ignore[arg-type,return-value]
    return build_spec(app, extra_errors=GATEWAY_ERRORS, examples={})


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_spec_presents_this_api_not_bentoml(spec: dict[str, Any]) -> None:
    assert spec["info"]["title"] == TITLE
    assert spec["info"]["version"] == package_version() != "None"
    assert "Authorization: Bearer" in spec["info"]["description"]
    assert "BentoML Team" not in str(spec["info"])
    assert spec["servers"] == [{"url": "/api/v1", "description": "this server"}]


def test_protected_routes_declare_the_key_schemes_and_gateway_refusals(spec: dict[str, Any]) -> None:
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    for path, method, op in _operations(spec):
        public = path in ("/health", "/metrics")
        assert ("security" in op) is not public, f"{method} {path}"
        assert ({"401", "403", "429"} <= set(op["responses"])) is not public, f"{method} {path}"


def test_every_error_response_is_a_problem_with_an_example_per_type(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400 or (path == "/health" and status == "503"):  # health's 503 is its own JSON body
                continue
            media = response["content"][PROBLEM_CONTENT_TYPE]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
            assert media["examples"], f"{method} {path} {status}"
            assert all(e["value"]["status"] == int(status) for e in media["examples"].values())
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_upload_routes_declare_image_errors_and_version_pinning(spec: dict[str, Any]) -> None:
    classify = spec["paths"]["/classify"]["post"]["responses"]
    assert {"400", "404", "413", "415", "422"} <= set(classify)
    assert "version-not-found" in classify["404"]["content"][PROBLEM_CONTENT_TYPE]["examples"]
    assert "404" not in spec["paths"]["/gallery"]["get"]["responses"]


def test_examples_are_placed_on_their_route(spec: dict[str, Any]) -> None:
    app = create_app(get_settings(), backend=lambda: None)  # type: ignore[arg-type,return-value]
    examples = {"POST /classify": {"request": {"image": "cat.jpg"}, "responses": {"200": {"model": "classifier"}}}}
    with_examples = build_spec(app, examples=examples)
    op = with_examples["paths"]["/classify"]["post"]
    assert op["requestBody"]["content"]["multipart/form-data"]["example"] == {"image": "cat.jpg"}
    assert op["responses"]["200"]["content"]["application/json"]["example"] == {"model": "classifier"}


def test_install_spec_serves_the_same_document_at_the_app(spec: dict[str, Any]) -> None:
    app = create_app(get_settings(), backend=lambda: None)  # type: ignore[arg-type,return-value]
    install_spec(app, extra_errors=GATEWAY_ERRORS)
    served = app.openapi()
    assert served is app.openapi()  # built once
    assert served["paths"].keys() == spec["paths"].keys()
    assert served["info"] == spec["info"]


def _subclasses(cls: type[ServiceError]) -> set[type[ServiceError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_error_class_is_registered_and_has_a_remedy() -> None:
    registered = set(ERRORS_BY_SLUG.values()) | set(GATEWAY_ERRORS)
    defined = {c for c in _subclasses(ServiceError) if not c.__module__.startswith("tests")}
    assert defined <= registered, f"not in ERRORS_BY_SLUG or GATEWAY_ERRORS: {defined - registered}"
    slugs = [t["slug"] for t in problem_types(GATEWAY_ERRORS)]
    assert len(slugs) == len(set(slugs))
    for cls in registered:
        assert cls.remedy and (cls is ServiceError or cls.remedy != ServiceError.remedy), cls.__name__
    assert kernel.errors.ServiceError.remedy
