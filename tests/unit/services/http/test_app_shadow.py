"""Shadow traffic through the public app: it never delays or changes an answer, and fails or drops unseen.

The shadow version's calls wait on a gate that the test opens only after it has the response in hand: were the
answer to wait for the shadow, the request would never complete (the ``wait_for`` guard would fail the test).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
from PIL import Image
from starlette.types import Message, Receive, Scope, Send

from services.config import ServingSettings
from services.experiments.snapshot import ExperimentBook
from services.http.app import create_app
from services.http.recording import RecordingClient
from services.shadow.mirror import ShadowMirror
from tests.unit.fakes import sample
from tests.unit.services.shadow.fakes import PRODUCTION, SHADOW, ShadowedModels, Writer

GUARD_S = 60  # only against a hang; nothing here measures time


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class Plane:
    def __init__(self, writer: Writer, mirror: ShadowMirror | None) -> None:
        self.log_writer = writer
        self.mirror = mirror
        self.experiments = ExperimentBook(lambda: [], refresh_s=60.0)  # none running


class Sent:
    """Outermost ASGI layer: notes when the last byte of the response body was handed to the server."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.done = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.done.set()

        await self.app(scope, receive, noting)


def app_over(models: ShadowedModels, writer: Writer, mirror: ShadowMirror | None) -> Sent:
    backend = RecordingClient(models)
    plane = Plane(writer, mirror)
    settings = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    return Sent(create_app(settings, backend=lambda: backend, data_plane=lambda: plane))  # type: ignore[arg-type,return-value]


async def classify(app: Sent, **data: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        request = client.post("/classify", files={"image": ("a.png", png(), "image/png")}, data=data)
        return await asyncio.wait_for(request, GUARD_S)


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("timings_ms", "request_id")}


def test_the_answer_goes_out_while_the_shadow_is_held_and_is_the_one_without_shadow() -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, Writer, ShadowedModels, bool]:
        plain = await classify(app_over(ShadowedModels(), Writer(), None))
        models, writer = ShadowedModels(), Writer()
        mirror = ShadowMirror(models, writer, models=["classifier"], refresh_s=3600)
        await mirror.refresh()
        mirror.start()
        models.gate.clear()  # the shadow's call waits until the test has its answer
        app = app_over(models, writer, mirror)
        response = await classify(app)
        await asyncio.wait_for(models.shadow_started.wait(), GUARD_S)
        sent_before_shadow = app.done.is_set()  # the shadow's call began after the last byte had gone
        held = [r for r in writer.records if r.shadow]
        assert held == [] and not models.gate.is_set()
        models.gate.set()
        await asyncio.wait_for(mirror.queue.join(), GUARD_S)
        await mirror.close()
        return plain, response, writer, models, sent_before_shadow

    plain, response, writer, models, sent_before_shadow = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    assert comparable(response.json()) == comparable(plain.json())
    assert response.json()["model"]["version"] == PRODUCTION
    assert response.json()["predictions"][0]["label"] == "v1-answer"
    assert response.headers["X-Model-Version"] == f"classifier:{PRODUCTION}"
    assert sent_before_shadow
    assert models.calls == [(None, 1), (SHADOW, 1)]
    production, shadow = writer.records
    assert (production.shadow, production.version) == (False, PRODUCTION)
    assert (shadow.shadow, shadow.version, shadow.top_label, shadow.agreement) == (True, SHADOW, "v9-answer", 0.0)
    assert shadow.request_id == production.request_id == response.headers["X-Request-ID"]
    assert shadow.image_sha256 == production.image_sha256


def test_a_failing_shadow_never_reaches_the_caller() -> None:
    async def scenario() -> tuple[httpx.Response, Writer]:
        models, writer = ShadowedModels(shadow_fails=RuntimeError("shadow exploded")), Writer()
        mirror = ShadowMirror(models, writer, models=["classifier"], refresh_s=3600)
        await mirror.refresh()
        mirror.start()
        response = await classify(app_over(models, writer, mirror))
        await asyncio.wait_for(mirror.queue.join(), GUARD_S)
        await mirror.close()
        return response, writer

    response, writer = asyncio.run(scenario())
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "v1-answer"
    (row,) = writer.shadow_rows()
    assert (row.status, row.error_type) == (503, "model-unavailable")


def test_a_full_shadow_queue_drops_the_copy_and_answers_as_always() -> None:
    async def scenario() -> tuple[list[httpx.Response], ShadowMirror]:
        models = ShadowedModels()
        mirror = ShadowMirror(models, Writer(), models=["classifier"], queue_size=1)
        await mirror.refresh()  # not started: nothing takes copies from the queue
        app = app_over(models, Writer(), mirror)
        return [await classify(app), await classify(app)], mirror

    before = sample("cv_shadow_dropped_total", {"model": "classifier"})
    responses, mirror = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 200]
    assert mirror.queue.qsize() == 1
    assert sample("cv_shadow_dropped_total", {"model": "classifier"}) - before == 1


def test_a_request_that_pins_a_version_is_not_mirrored() -> None:
    async def scenario() -> tuple[httpx.Response, ShadowMirror]:
        models = ShadowedModels()
        mirror = ShadowMirror(models, Writer(), models=["classifier"])
        await mirror.refresh()
        return await classify(app_over(models, Writer(), mirror), version=PRODUCTION), mirror

    response, mirror = asyncio.run(scenario())
    assert response.status_code == 200
    assert mirror.queue.qsize() == 0


def test_a_broken_mirror_does_not_fail_the_request() -> None:
    class Broken:
        def offer(self, copy: object) -> bool:
            raise RuntimeError("broken mirror")

    async def scenario() -> tuple[httpx.Response, Writer]:
        writer = Writer()
        return await classify(app_over(ShadowedModels(), writer, Broken())), writer  # type: ignore[arg-type]

    response, writer = asyncio.run(scenario())
    assert response.status_code == 200
    assert len(writer.records) == 1  # the production row was logged all the same
