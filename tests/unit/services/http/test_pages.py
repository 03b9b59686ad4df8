"""The browser pages: /, /ui and its assets, /docs.json answered by the middleware; everything else passes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from services.http.pages import PAGES, PagesMiddleware


def _client() -> TestClient:
    inner = Starlette(routes=[Route("/api/v1/x", lambda _: PlainTextResponse("inner"))])
    return TestClient(PagesMiddleware(inner, spec=lambda: {"openapi": "3.1.0", "info": {"title": "t"}}))


def test_pages_are_served_with_their_media_types() -> None:
    client = _client()
    for path, (_, media) in PAGES.items():
        answer = client.get(path)
        assert answer.status_code == 200 and answer.headers["content-type"] == media, path
    assert "<title>Computer-vision API" in client.get("/ui").text
    assert client.get("/docs.json").json()["info"]["title"] == "t"


def test_ui_with_a_slash_redirects_and_other_paths_pass_through() -> None:
    client = _client()
    answer = client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 308 and answer.headers["location"] == "/ui"
    assert client.get("/api/v1/x").text == "inner"
    assert client.post("/ui").status_code == 404  # only GET and HEAD are pages


def test_pages_load_nothing_from_outside() -> None:
    client = _client()
    for path in PAGES:
        assert "http://" not in client.get(path).text.replace("http://127.0.0.1", "")
        assert "https://" not in client.get(path).text
