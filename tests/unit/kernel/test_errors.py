"""The error hierarchy, its serialisation across processes and its RFC 9457 problem documents."""

from __future__ import annotations

import pytest

import gateway.errors  # noqa: F401  (the gateway's refusals join the hierarchy below)
from kernel.errors import (
    ERRORS_BY_SLUG,
    PROBLEM_CONTENT_TYPE,
    InvalidParameter,
    NotFound,
    ServiceError,
    UnsupportedMediaType,
    VersionNotFound,
    error_from_dict,
    error_to_dict,
    problem_body,
    problem_from_error,
)


def _project_errors() -> list[type[ServiceError]]:
    """ServiceError and every subclass of it the project defines, found by walking the class tree."""
    found: set[type[ServiceError]] = set()
    todo = [ServiceError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] != "tests" and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: (c.__module__, c.__name__))


ALL_ERRORS = _project_errors()
# The gateway answers its refusals itself (401, 403, 429, 503 at the edge): they never cross a process boundary
# to be rebuilt by error_from_dict, and kernel/ may not import gateway/. Every other error may be raised in a
# model service or a worker and rebuilt in the api, so it must be in the map.
GATEWAY_ERRORS = [cls for cls in ALL_ERRORS if cls.__module__.startswith("gateway.")]
REBUILT_ERRORS = [cls for cls in ALL_ERRORS if cls not in GATEWAY_ERRORS]
# The public contract: a problem type's status never changes by accident. A new error states its status here.
EXPECTED_STATUS = {
    "internal-error": 500,
    "overloaded": 503,
    "invalid-parameter": 422,
    "invalid-image": 400,
    "payload-too-large": 413,
    "image-too-large": 413,
    "unsupported-media-type": 415,
    "not-found": 404,
    "version-not-found": 404,
    "model-unavailable": 503,
    "inference-failed": 500,
    "worker-lost": 500,
    "job-image-missing": 500,
    "jobs-unavailable": 503,
    "gateway-signature-invalid": 401,
    "gallery-model-mismatch": 409,
    "database-unavailable": 503,
    "experiment-conflict": 409,
    "drift-reference-not-found": 404,
    "drift-unavailable": 503,
    "unauthenticated": 401,
    "forbidden": 403,
    "rate-limited": 429,
    "rate-limiter-unavailable": 503,
}


def _name(cls: type[ServiceError]) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def test_the_hierarchy_is_found_in_the_kernel_and_the_gateway() -> None:
    assert ServiceError in ALL_ERRORS and VersionNotFound in ALL_ERRORS  # a grandchild too
    assert GATEWAY_ERRORS  # the import above brought them


def test_every_error_has_a_slug_of_its_own() -> None:
    by_slug: dict[str, list[str]] = {}
    for cls in ALL_ERRORS:
        by_slug.setdefault(cls.type_slug, []).append(_name(cls))
    shared = {slug: names for slug, names in by_slug.items() if len(names) > 1}
    assert not shared, f"problem types shared by several classes: {shared}"


@pytest.mark.parametrize("cls", REBUILT_ERRORS, ids=_name)
def test_every_error_is_registered_by_its_slug(cls: type[ServiceError]) -> None:
    assert ERRORS_BY_SLUG.get(cls.type_slug) is cls, (
        f"{_name(cls)} is missing from kernel.errors.ERRORS_BY_SLUG: error_from_dict would rebuild it as a 500"
    )


def test_the_registry_holds_only_project_errors_under_their_own_slugs() -> None:
    assert {slug: cls.type_slug for slug, cls in ERRORS_BY_SLUG.items()} == {slug: slug for slug in ERRORS_BY_SLUG}
    assert set(ERRORS_BY_SLUG.values()) == set(REBUILT_ERRORS)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=_name)
def test_every_error_has_a_status_and_a_public_message(cls: type[ServiceError]) -> None:
    assert 400 <= cls.status_code < 600
    assert cls.status_code == EXPECTED_STATUS.get(cls.type_slug), f"state {_name(cls)}'s status in EXPECTED_STATUS"
    assert cls.title.strip()
    assert "type_slug" in vars(cls) and "title" in vars(cls), f"{_name(cls)} inherits its parent's problem type"


@pytest.mark.parametrize("cls", REBUILT_ERRORS, ids=_name)
def test_error_round_trips_through_dict(cls: type[ServiceError]) -> None:
    error = cls(f"something about {cls.__name__}", loaded=["v1"])
    data = error_to_dict(error)
    assert data == {"type": cls.type_slug, "detail": f"something about {cls.__name__}", "extra": {"loaded": ["v1"]}}
    rebuilt = error_from_dict(data)
    assert type(rebuilt) is cls
    assert rebuilt.extra == {"loaded": ["v1"]}
    assert rebuilt.public_message == error.public_message
    assert rebuilt.status_code == error.status_code


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=_name)
def test_error_without_message_uses_title(cls: type[ServiceError]) -> None:
    error = cls()
    assert error.public_message == cls.title
    assert str(error) == cls.title
    if cls in REBUILT_ERRORS:
        assert error_from_dict({"type": cls.type_slug}).public_message == cls.title


def test_error_from_dict_unknown_type_is_internal_error() -> None:
    rebuilt = error_from_dict({"type": "no-such-type", "detail": "odd"})
    assert type(rebuilt) is ServiceError
    assert rebuilt.status_code == 500
    assert rebuilt.public_message == "odd"
    assert type(error_from_dict({})) is ServiceError


def test_version_not_found_is_a_not_found() -> None:
    assert isinstance(VersionNotFound(), NotFound)
    assert VersionNotFound().type_uri == "urn:cv-api:problem:version-not-found"


def test_problem_from_error_fields() -> None:
    error = UnsupportedMediaType("send a PNG")
    problem = problem_from_error(error, instance="/api/v1/classify", request_id="abc123")
    assert problem == {
        "type": "urn:cv-api:problem:unsupported-media-type",
        "title": "Unsupported media type",
        "status": 415,
        "detail": "send a PNG",
        "instance": "/api/v1/classify",
        "request_id": "abc123",
    }
    assert PROBLEM_CONTENT_TYPE == "application/problem+json"


def test_problem_from_error_includes_extra_members() -> None:
    error = InvalidParameter("bad top_k", errors=[{"loc": "top_k"}])
    problem = problem_from_error(error, instance="/x", request_id=None)
    assert problem["errors"] == [{"loc": "top_k"}]
    assert problem["request_id"] is None
    assert problem["status"] == 422


def test_problem_body_without_extra_has_exactly_rfc_members() -> None:
    body = problem_body(status=404, type_uri="urn:x", title="t", detail="d", instance="/i", request_id="r")
    assert set(body) == {"type", "title", "status", "detail", "instance", "request_id"}
