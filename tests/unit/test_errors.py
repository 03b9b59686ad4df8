"""The error hierarchy, its serialisation across processes and its RFC 9457 problem documents."""

from __future__ import annotations

import pytest

from kernel.errors import (
    ERRORS_BY_SLUG,
    PROBLEM_CONTENT_TYPE,
    GalleryModelMismatch,
    ImageMissing,
    ImageTooLarge,
    InferenceFailed,
    InvalidImage,
    InvalidParameter,
    JobsUnavailable,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    VersionNotFound,
    WorkerLost,
    error_from_dict,
    error_to_dict,
    problem_body,
    problem_from_error,
)

ALL_ERRORS = [
    ServiceError,
    InvalidParameter,
    InvalidImage,
    PayloadTooLarge,
    ImageTooLarge,
    UnsupportedMediaType,
    NotFound,
    VersionNotFound,
    ModelUnavailable,
    InferenceFailed,
    WorkerLost,
    ImageMissing,
    JobsUnavailable,
    GalleryModelMismatch,
]
EXPECTED_STATUS = {
    ServiceError: 500,
    InvalidParameter: 422,
    InvalidImage: 400,
    PayloadTooLarge: 413,
    ImageTooLarge: 413,
    UnsupportedMediaType: 415,
    NotFound: 404,
    VersionNotFound: 404,
    ModelUnavailable: 503,
    InferenceFailed: 500,
    WorkerLost: 500,
    ImageMissing: 500,
    JobsUnavailable: 503,
    GalleryModelMismatch: 409,
}


def test_every_error_class_is_registered_by_a_unique_slug() -> None:
    assert set(ERRORS_BY_SLUG.values()) == set(ALL_ERRORS)
    assert len({cls.type_slug for cls in ALL_ERRORS}) == len(ALL_ERRORS)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_error_status_codes(cls: type[ServiceError]) -> None:
    assert cls.status_code == EXPECTED_STATUS[cls]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_error_round_trips_through_dict(cls: type[ServiceError]) -> None:
    error = cls(f"something about {cls.__name__}", loaded=["v1"])
    data = error_to_dict(error)
    assert data == {"type": cls.type_slug, "detail": f"something about {cls.__name__}", "extra": {"loaded": ["v1"]}}
    rebuilt = error_from_dict(data)
    assert type(rebuilt) is cls
    assert rebuilt.extra == {"loaded": ["v1"]}
    assert rebuilt.public_message == error.public_message
    assert rebuilt.status_code == error.status_code


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_error_without_message_uses_title(cls: type[ServiceError]) -> None:
    error = cls()
    assert error.public_message == cls.title
    assert str(error) == cls.title
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
