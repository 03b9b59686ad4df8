"""The api's app is built on first use (services/http/deferred.py); tests/unit/test_process_imports.py checks what
that keeps out of BentoML's supervisor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
from fastapi import FastAPI

from services.http.deferred import DeferredApp


def _factory(calls: list[int]) -> Any:
    def build() -> FastAPI:
        calls.append(1)
        app = FastAPI(title="deferred")

        @app.get("/ping")
        def ping() -> dict[str, str]:
            return {"pong": "yes"}

        return app

    return build


def test_the_app_is_built_once_when_first_needed() -> None:
    calls: list[int] = []
    deferred = DeferredApp(_factory(calls))
    assert not deferred.built and calls == []
    first = deferred.get()
    assert deferred.get() is first and deferred.built and calls == [1]


def test_concurrent_first_uses_build_one_app() -> None:
    calls: list[int] = []
    deferred = DeferredApp(_factory(calls))
    apps: list[FastAPI] = []
    threads = [threading.Thread(target=lambda: apps.append(deferred.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(app) for app in apps}) == 1


def test_routes_and_spec_are_the_built_apps() -> None:
    deferred = DeferredApp(_factory([]))
    assert "/ping" in {getattr(route, "path", None) for route in deferred.routes}
    assert deferred.openapi()["info"]["title"] == "deferred"


def test_requests_reach_the_built_app() -> None:
    calls: list[int] = []
    deferred = DeferredApp(_factory(calls))

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=deferred)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/ping"), await client.get("/nowhere")

    answer, missing = asyncio.run(ask())
    assert answer.status_code == 200 and answer.json() == {"pong": "yes"}
    assert missing.status_code == 404 and calls == [1]


def test_the_api_module_builds_the_product_app() -> None:
    import services.api

    spec = services.api.app.openapi()
    assert "/classify" in spec["paths"] and services.api.app.built
