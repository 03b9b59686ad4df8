"""The documents made from the spec: the error catalogue, the route reference, the Postman collection."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GATEWAY_ERRORS
from kernel.errors import ERRORS_BY_SLUG
from scripts.openapi_docs import error_catalogue, postman_collection, replace_section, route_reference
from services.config import get_settings
from services.http.app import create_app
from services.http.openapi import build_spec


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(get_settings(), backend=lambda: None)  # type: ignore[arg-type,return-value]
    examples = {
        "POST /classify": {"request": {"image": "chelsea.jpg", "top_k": 3}, "responses": {"200": {"model": "x"}}},
    }
    return build_spec(app, extra_errors=GATEWAY_ERRORS, examples=examples)


def test_catalogue_lists_every_problem_type_once() -> None:
    table = error_catalogue(GATEWAY_ERRORS)
    for slug in [*ERRORS_BY_SLUG, *(c.type_slug for c in GATEWAY_ERRORS), "method-not-allowed"]:
        assert table.count(f"| `{slug}` |") == 1, slug


def test_replace_section_keeps_what_is_around_it() -> None:
    text = "a\n<!-- x:start -->\nold\n<!-- x:end -->\nb\n"
    assert replace_section(text, "x", "new") == "a\n<!-- x:start -->\nnew\n<!-- x:end -->\nb\n"
    with pytest.raises(ValueError, match="no <!-- y:start -->"):
        replace_section(text, "y", "new")


def test_route_reference_has_a_curl_call_and_the_real_answer(spec: dict[str, Any]) -> None:
    text = route_reference(spec)
    assert text.count("### `") == sum(len(ops) for ops in spec["paths"].values())
    assert "-F image=@chelsea.jpg" in text and "-F 'top_k=3'" in text
    assert '"model": "x"' in text
    assert "Authorization: Bearer $CV_API_KEY" in text


def test_postman_has_one_request_per_operation_with_form_files(spec: dict[str, Any]) -> None:
    collection = postman_collection(spec)
    requests = [item["request"] for folder in collection["item"] for item in folder["item"]]
    assert len(requests) == sum(len(ops) for ops in spec["paths"].values())
    classify = next(r for r in requests if r["url"]["raw"] == "{{baseUrl}}/classify")
    form = {f["key"]: f["type"] for f in classify["body"]["formdata"]}
    assert form["image"] == "file" and form["top_k"] == "text"
    job = next(r for r in requests if r["method"] == "GET" and r["url"]["raw"].endswith(":job_id"))
    assert job["url"]["variable"] == [{"key": "job_id", "value": ""}]
    assert collection["auth"]["type"] == "bearer"
