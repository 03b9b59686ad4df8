"""What a user lands on: the served spec is the committed docs/openapi.json, and the page needs no internet.

When this fails after a route or an error changed, run `make openapi` and commit what it writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import GATEWAY_ERRORS
from scripts.openapi_docs import error_catalogue, postman_collection, replace_section, route_reference
from services.http.openapi import EXAMPLES_FILE
from tests.integration.server import Server

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[3] / "docs"
FIX = "run `make openapi` and commit docs/ and services/http/openapi_examples.json"


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((DOCS / "openapi.json").read_text())
    return spec


def test_served_spec_is_the_committed_one(server: Server, committed: dict[str, Any]) -> None:
    served = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert served == committed, FIX
    assert httpx.get(f"{server.url}/api/v1/openapi.json", timeout=30).json() == committed


def test_landing_page_is_this_apis_swagger_ui_and_reaches_nothing_outside(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.status_code == 200 and "<title>Computer-vision API</title>" in page.text
    assert not re.findall(r"(?:src|href)=\"https?://", page.text), "the page must load nothing from the internet"
    for asset in re.findall(r"(?:src|href)=\"\./(static_content/[^\"]+)\"", page.text):
        assert httpx.get(f"{server.url}/{asset}", timeout=30).status_code == 200, asset


def test_every_route_has_a_real_example_for_its_success_answer(committed: dict[str, Any]) -> None:
    missing = []
    for path, operations in committed["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                media = (response.get("content") or {}).get("application/json")
                if status.startswith("2") and media is not None and "example" not in media:
                    missing.append(f"{method.upper()} {path} {status}")
    assert missing == [], f"no example recorded for {missing}; extend scripts/export_openapi.py:capture, then {FIX}"
    assert json.loads(EXAMPLES_FILE.read_text())


def test_generated_documents_match_the_committed_spec(committed: dict[str, Any]) -> None:
    api_md = (DOCS / "api.md").read_text()
    regenerated = replace_section(api_md, "routes", route_reference(committed))
    regenerated = replace_section(regenerated, "errors", error_catalogue(GATEWAY_ERRORS))
    assert regenerated == api_md, FIX
    assert json.loads((DOCS / "postman_collection.json").read_text()) == postman_collection(committed), FIX
