"""The api's app is built on first use (services/http/deferred.py), so BentoML's supervisors import little."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kernel.paths import REPO_ROOT
from services.http.deferred import DeferredApp

# What a process that serves no request must not load: the data plane, the job queue, the vector index, the models'
# runtime, the public routes.
WORKER_ONLY = (
    "sqlalchemy",
    "celery",
    "kombu",
    "faiss",
    "psycopg",
    "redis",
    "cv2",
    "onnxruntime",
    "services.http.app",
    "services.http.dataplane",
    "gateway.inprocess",
    "scipy",
)


def _factory(calls: list[int]) -> Any:
    def build() -> FastAPI:
        calls.append(1)
        app = FastAPI(title="deferred")

        @app.get("/ping")
        def ping() -> dict[str, str]:
            return {"pong": "yes"}

        return app

    return build


@pytest.mark.parametrize("module", ["services.api", "services.classifier", "services.detector", "services.embedder"])
def test_importing_a_service_module_loads_nothing_only_its_worker_uses(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps([m for m in {WORKER_ONLY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_built_api_loads_scipy_only_for_drift_and_experiments() -> None:
    code = (
        "import sys, services.api; services.api.app.get(); loaded = 'scipy' in sys.modules; "
        "from services.drift.detect import _ks; _ks('f', [0.0, 1.0, 2.0], [5.0, 6.0, 7.0]); "
        "print(loaded, 'scipy.stats' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


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


def test_celery_beat_loads_no_task_module() -> None:
    code = "import json, sys, services.jobs.celery_beat as b; b.app.loader.init_worker(); print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & {"services.jobs.tasks", "services.models.worker", "numpy", "scipy", "PIL"}
