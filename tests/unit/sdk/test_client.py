"""Client: each call's request, its typed result, configuration, retries and errors, over a mocked transport."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import cv_client
from cv_client import AsyncClient, Client, RetryPolicy
from tests.unit.sdk import bodies
from tests.unit.sdk.fake_server import FakeServer, files, form, problem_response

URL = "http://cv.test:3000"


def png(size: tuple[int, int] = (8, 6), colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


class Sleeps(list[float]):
    """A fake sleep that notes each wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(server: FakeServer, sleeps: Sleeps | None = None, **kwargs: object) -> Client:
    return Client(URL, transport=server.transport, sleep=sleeps if sleeps is not None else Sleeps(), **kwargs)  # type: ignore[arg-type]


def test_classify_posts_the_image_and_top_k_and_parses_the_result() -> None:
    server = FakeServer().on("POST /api/v1/classify", bodies.classify())
    result = client(server).classify(png(), top_k=3, version="v2")
    request = server.last
    assert str(request.url) == f"{URL}/api/v1/classify"
    assert form(request) == {"top_k": "3", "version": "v2"}
    (part,) = files(request)
    assert (part.name, part.content_type, part.data) == ("image", "image/png", png())
    assert isinstance(result, cv_client.ClassifyResult)
    assert result.top1 is not None and result.top1.label == "tabby" and result.top1.label_id == "n02123045"
    assert result.predictions[1].label_id is None


def test_detect_sends_only_the_parameters_given_and_classes_comma_separated() -> None:
    server = FakeServer().on("POST /api/v1/detect", bodies.detect())
    result = client(server).detect(png(), confidence=0.5, classes=[0, 2])
    assert form(server.last) == {"confidence": "0.5", "classes": "0,2"}
    assert result.detections[0].box.x2 == 40.0 and result.cached is True


def test_search_gallery_add_size_and_remove() -> None:
    server = (
        FakeServer()
        .on("POST /api/v1/search", bodies.search())
        .on("POST /api/v1/gallery", httpx.Response(201, json=bodies.gallery_item()))
        .on("GET /api/v1/gallery", {"size": 7})
        .on("DELETE /api/v1/gallery/g1", httpx.Response(204))
    )
    sdk = client(server)
    hits = sdk.search(png(), top_k=2)
    assert form(server.last) == {"top_k": "2"}
    assert hits.results[0].metadata == {"kind": "rocket"} and hits.gallery_size == 1
    assert sdk.search(png(), top_k=2, expand=10).query_expansion == 0  # the fake's body; the form is what counts
    assert form(server.last) == {"top_k": "2", "expand": "10"}
    added = sdk.gallery_add(png(), metadata={"kind": "rocket"})
    assert json.loads(form(server.last)["metadata"]) == {"kind": "rocket"} and added.id == "g1"
    assert sdk.gallery_size().size == 7
    sdk.gallery_remove("g1")
    assert server.last.method == "DELETE"


def test_batch_is_inline_with_one_part_per_image() -> None:
    server = FakeServer().on("POST /api/v1/batch", bodies.batch())
    result = client(server).batch([png(), png((4, 4))], "classify", top_k=2)
    assert form(server.last) == {"task": "classify", "mode": "inline", "top_k": "2"}
    assert [p.name for p in files(server.last)] == ["images", "images"]
    assert [p.filename for p in files(server.last)] == ["image-0.png", "image-1.png"]
    assert result.succeeded == 1 and result.items[1].error is not None
    assert result.items[1].error.type.endswith("invalid-image")


def test_batch_refuses_an_unknown_option() -> None:
    with pytest.raises(TypeError, match="topk"):
        client(FakeServer()).batch([png()], "classify", topk=2)


def test_submit_batch_then_wait_polls_with_the_interval_and_collects_every_page() -> None:
    server = (
        FakeServer()
        .on("POST /api/v1/batch", httpx.Response(202, json=bodies.job("queued")))
        .on(
            "GET /api/v1/jobs/job-123456789",
            bodies.job("queued"),
            bodies.job("running"),
            bodies.job("succeeded"),
            bodies.job("succeeded", items=[bodies.job_item(0)], next_offset=1),
            bodies.job("succeeded", items=[bodies.job_item(1)]),
        )
    )
    sleeps = Sleeps()
    sdk = client(server, sleeps)
    job = sdk.submit_batch([png(), png()], "detect", confidence=0.3)
    assert form(server.requests[0]) == {"task": "detect", "mode": "job", "confidence": "0.3"}
    assert job.id == "job-123456789" and not job.finished
    done = sdk.wait(job, poll_interval=0.25, progress=False)
    assert sleeps == [0.25, 0.25]
    polls = [dict(r.url.params) for r in server.requests[1:]]
    assert polls == [
        {"offset": "0", "limit": "0"},
        {"offset": "0", "limit": "0"},
        {"offset": "0", "limit": "0"},
        {"offset": "0", "limit": "1000"},
        {"offset": "1", "limit": "1000"},
    ]
    assert done.status == "succeeded" and [i.index for i in done.items] == [0, 1]
    assert isinstance(done.items[0].result, cv_client.DetectResult)


def test_wait_gives_up_after_its_timeout() -> None:
    server = FakeServer().on("GET /api/v1/jobs/j1", bodies.job("running"))
    sleeps = Sleeps()
    with pytest.raises(cv_client.JobTimeout, match="j1"):
        client(server, sleeps).wait("j1", poll_interval=1.0, timeout=3.0, progress=False)
    assert sleeps == [1.0, 1.0, 1.0]


def test_wait_shows_a_progress_bar_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer().on("GET /api/v1/jobs/j1", bodies.job("running"), bodies.job("succeeded"))
    client(server).wait("j1", poll_interval=0, progress=True)
    assert "2/2" in capsys.readouterr().err


def test_cancel_job_deletes_it() -> None:
    server = FakeServer().on("DELETE /api/v1/jobs/j1", httpx.Response(202, json=bodies.job("cancelled")))
    assert client(server).cancel_job("j1").status == "cancelled"


def test_models_and_health_parse_with_the_parts_the_server_left_out() -> None:
    server = FakeServer().on("GET /api/v1/models", bodies.models()).on("GET /api/v1/health", bodies.health())
    sdk = client(server)
    models = sdk.models().models
    assert models[0].versions[0].stage == "production" and models[1].default_version is None
    assert models[1].error == "unreachable"
    health = sdk.health()
    assert health.status == "ok" and health.data is not None and health.data.inference_log is None


def test_experiments_and_feedback() -> None:
    server = (
        FakeServer()
        .on("GET /api/v1/experiments", {"experiments": [bodies.experiment()]})
        .on("GET /api/v1/experiments/clf-ab", bodies.experiment({"arms": []}))
        .on("POST /api/v1/feedback", bodies.feedback())  # a dict: answered afresh to each client
    )
    sdk = client(server)
    (listed,) = sdk.experiments().experiments
    assert listed.id == "clf-ab" and [a.version for a in listed.arms] == ["v1", "v2"] and listed.start_at is None
    assert sdk.experiment("clf-ab").analysis == {"arms": []}
    result = sdk.feedback("req-1", label="tabby")
    assert json.loads(server.last.read()) == {"request_id": "req-1", "item_index": 0, "label": "tabby"}
    assert result.correct is True and result.arm == "candidate"
    asyncio.run(_async_feedback(server))
    assert json.loads(server.last.read()) == {"request_id": "req-2", "item_index": 1, "correct": False}


async def _async_feedback(server: FakeServer) -> None:
    async with AsyncClient(URL, transport=server.transport) as sdk:
        assert (await sdk.experiments()).experiments[0].running is True
        assert (await sdk.experiment("clf-ab")).model == "classifier"
        assert (await sdk.feedback("req-2", correct=False, item_index=1)).arm == "candidate"


def test_drift_asks_for_the_window_and_version_given() -> None:
    server = FakeServer().on("GET /api/v1/drift/classifier", bodies.drift(), bodies.drift())
    sdk = client(server)
    report = sdk.drift("classifier")
    assert (report.verdict, report.tests[0].drift, report.tests[1].p_value) == ("drift", True, None)
    assert dict(server.last.url.params) == {}
    sdk.drift("classifier", window=50, version="v1")
    assert dict(server.last.url.params) == {"window": "50", "version": "v1"}


def test_health_503_is_a_result_not_an_error_and_not_retried() -> None:
    server = FakeServer().on("GET /api/v1/health", httpx.Response(503, json=bodies.health("down")))
    sleeps = Sleeps()
    assert client(server, sleeps).health().status == "down"
    assert sleeps == [] and len(server.requests) == 1


def test_api_key_goes_as_a_bearer_token_and_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CV_API_URL", "http://edge.test:8080/")
    monkeypatch.setenv("CV_API_KEY", "k-123")
    server = FakeServer().on("GET /api/v1/models", bodies.models())
    Client(transport=server.transport).models()
    assert str(server.last.url) == "http://edge.test:8080/api/v1/models"
    assert server.last.headers["authorization"] == "Bearer k-123"
    assert server.last.headers["user-agent"].startswith("cv-client/")


def test_arguments_win_over_the_environment_and_no_key_sends_no_authorization(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CV_API_URL", "http://env.test")
    monkeypatch.delenv("CV_API_KEY", raising=False)
    server = FakeServer().on("GET /api/v1/models", bodies.models())
    sdk = Client("http://arg.test/api/v1", transport=server.transport)
    sdk.models()
    assert str(server.last.url) == "http://arg.test/api/v1/models"
    assert "authorization" not in server.last.headers
    monkeypatch.delenv("CV_API_URL")
    assert Client().base_url == "http://127.0.0.1:3000/api/v1"


def test_429_and_503_are_retried_after_retry_after_then_succeed() -> None:
    limited = problem_response(429, bodies.problem(429, "rate-limited"), **{"Retry-After": "2"})
    busy = problem_response(503, bodies.problem(503, "model-unavailable"), **{"Retry-After": "1"})
    server = FakeServer().on("POST /api/v1/classify", limited, busy, bodies.classify())
    sleeps = Sleeps()
    image = png()
    result = client(server, sleeps).classify(image)
    assert sleeps == [2.0, 1.0]
    assert result.top1 is not None
    # The image goes again on every try.
    assert [files(r)[0].data for r in server.requests] == [image] * 3


def test_without_retry_after_the_waits_grow_exponentially() -> None:
    busy = httpx.Response(503, text="busy")
    server = FakeServer().on("GET /api/v1/models", busy, busy, busy, bodies.models())
    sleeps = Sleeps()
    client(server, sleeps, retry=RetryPolicy(max_retries=3, backoff=1.0)).models()
    assert len(sleeps) == 3
    assert 0.8 <= sleeps[0] <= 1.0 and 1.6 <= sleeps[1] <= 2.0 and 3.2 <= sleeps[2] <= 4.0


def test_gives_up_after_max_retries_with_the_last_problem() -> None:
    limited = problem_response(429, bodies.problem(429, "rate-limited"), **{"Retry-After": "1"})
    server = FakeServer().on("POST /api/v1/classify", limited)
    sleeps = Sleeps()
    with pytest.raises(cv_client.RateLimited) as caught:
        client(server, sleeps, retry=RetryPolicy(max_retries=2)).classify(png())
    assert sleeps == [1.0, 1.0] and len(server.requests) == 3
    assert caught.value.retry_after == 1.0 and caught.value.slug == "rate-limited"


def test_gives_up_rather_than_wait_past_the_total_budget() -> None:
    limited = problem_response(429, bodies.problem(429, "rate-limited"), **{"Retry-After": "40"})
    server = FakeServer().on("POST /api/v1/classify", limited)
    sleeps = Sleeps()
    with pytest.raises(cv_client.RateLimited):
        client(server, sleeps, retry=RetryPolicy(max_retries=5, max_total_wait=60)).classify(png())
    assert sleeps == [30.0, 30.0]  # each wait capped at max_backoff; a third would pass 60 s


@pytest.mark.parametrize(
    ("status", "slug", "error"),
    [
        (400, "invalid-image", cv_client.BadRequest),
        (401, "unauthenticated", cv_client.Unauthorized),
        (403, "forbidden", cv_client.Forbidden),
        (404, "version-not-found", cv_client.NotFound),
        (409, "gallery-model-mismatch", cv_client.Conflict),
        (413, "payload-too-large", cv_client.PayloadTooLarge),
        (415, "unsupported-media-type", cv_client.UnsupportedMediaType),
        (422, "invalid-parameter", cv_client.InvalidParameter),
        (500, "inference-failed", cv_client.ServerError),
    ],
)
def test_problem_json_becomes_a_typed_error_with_its_request_id(
    status: int, slug: str, error: type[cv_client.ApiError]
) -> None:
    server = FakeServer().on("POST /api/v1/classify", problem_response(status, bodies.problem(status, slug, "why")))
    with pytest.raises(error) as caught:
        client(server).classify(png())
    exc = caught.value
    assert isinstance(exc, cv_client.ApiError)
    assert (exc.status, exc.slug, exc.detail, exc.request_id) == (status, slug, "why", "req-9")
    assert exc.type == f"urn:cv-api:problem:{slug}" and exc.instance == "/api/v1/classify"
    assert "req-9" in str(exc)


def test_a_non_json_error_is_still_an_api_error_with_the_header_request_id() -> None:
    server = FakeServer().on(
        "GET /api/v1/models", httpx.Response(502, text="Bad Gateway", headers={"X-Request-ID": "edge-1"})
    )
    with pytest.raises(cv_client.ServerError) as caught:
        client(server).models()
    assert caught.value.status == 502 and caught.value.slug is None
    assert caught.value.detail == "Bad Gateway" and caught.value.request_id == "edge-1"


def test_503_after_the_retries_is_service_unavailable() -> None:
    server = FakeServer().on("GET /api/v1/models", problem_response(503, bodies.problem(503, "model-unavailable")))
    with pytest.raises(cv_client.ServiceUnavailable):
        client(server, retry=RetryPolicy(max_retries=0)).models()


def test_inputs_as_path_bytes_pil_and_numpy(tmp_path: Path) -> None:
    server = FakeServer().on("POST /api/v1/classify", bodies.classify())
    sdk = client(server)
    jpeg = io.BytesIO()
    Image.new("RGB", (5, 5), (0, 0, 255)).save(jpeg, format="JPEG")
    path = tmp_path / "blue.jpg"
    path.write_bytes(jpeg.getvalue())
    array = np.zeros((6, 8, 3), dtype=np.uint8)
    array[..., 1] = 255
    for image in (path, str(path), jpeg.getvalue(), Image.new("RGB", (8, 6), (0, 255, 0)), array):
        sdk.classify(image)
    sent = [files(r)[0] for r in server.requests]
    assert [(p.filename, p.content_type) for p in sent] == [
        ("blue.jpg", "image/jpeg"),
        ("blue.jpg", "image/jpeg"),
        ("image.jpg", "image/jpeg"),
        ("image.png", "image/png"),
        ("image.png", "image/png"),
    ]
    decoded = Image.open(io.BytesIO(sent[4].data))
    assert decoded.size == (8, 6) and decoded.getpixel((0, 0)) == (0, 255, 0)


def test_unknown_bytes_go_as_octet_stream_and_other_inputs_are_refused() -> None:
    server = FakeServer().on("POST /api/v1/classify", bodies.classify())
    client(server).classify(b"not an image")
    part = files(server.last)[0]
    assert (part.filename, part.content_type) == ("image", "application/octet-stream")
    with pytest.raises(TypeError, match="int"):
        client(server).classify(42)


def test_async_client_makes_the_same_calls_and_retries() -> None:
    limited = problem_response(429, bodies.problem(429, "rate-limited"), **{"Retry-After": "3"})
    server = (
        FakeServer()
        .on("POST /api/v1/detect", limited, bodies.detect())
        .on("POST /api/v1/batch", httpx.Response(202, json=bodies.job("queued")))
        .on("GET /api/v1/jobs/job-123456789", bodies.job("running"), bodies.job("succeeded"))
        .on("GET /api/v1/health", bodies.health())
        .on("GET /api/v1/gallery", {"size": 2})
        .on("GET /api/v1/drift/detector", bodies.drift())
        .on("POST /api/v1/classify", problem_response(400, bodies.problem(400, "invalid-image")))
    )
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> None:
        async with AsyncClient(URL, api_key="k", transport=server.transport, sleep=sleep) as sdk:
            detected = await sdk.detect(png(), iou=0.5)
            assert detected.detections[0].label == "person"
            job = await sdk.submit_batch([png()], "detect")
            done = await sdk.wait(job.id, poll_interval=0.5, progress=False)
            assert done.finished
            assert (await sdk.health()).live
            assert (await sdk.gallery_size()).size == 2
            assert (await sdk.drift("detector", window=10)).n == 800
            with pytest.raises(cv_client.BadRequest):
                await sdk.classify(png())

    asyncio.run(scenario())
    assert sleeps == [3.0, 0.5]
    assert all(r.headers["authorization"] == "Bearer k" for r in server.requests)
