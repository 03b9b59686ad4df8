"""Admission control: the limit, the bounded wait, the refusal, the adaptive limit, and which routes it guards."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kernel.errors import ERRORS_BY_SLUG, ModelUnavailable, Overloaded
from services.config import ServingSettings
from services.http.admission import AdmissionController
from services.http.app import create_app
from services.models.worker import InferenceItem, Outcome
from tests.unit.fakes import sample


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _refusals(route: str, reason: str) -> float:
    return sample("cv_admission_refused_total", {"route": route, "reason": reason})


def test_overloaded_is_a_503_with_retry_after_in_the_catalogue() -> None:
    error = Overloaded("busy", retry_after_s=3)
    assert (error.status_code, error.type_slug, error.headers) == (503, "overloaded", {"Retry-After": "3"})
    assert ERRORS_BY_SLUG["overloaded"] is Overloaded
    assert Overloaded(retry_after_s=0).headers == {"Retry-After": "1"}  # never "retry at once"


def test_admits_up_to_the_limit_then_refuses_at_once_without_a_queue() -> None:
    async def scenario() -> None:
        controller = AdmissionController(2, queue_timeout_s=0.0, retry_after_s=4)
        await controller.acquire("/r")
        await controller.acquire("/r")
        before = _refusals("/r", "full")
        with pytest.raises(Overloaded) as refused:
            await controller.acquire("/r")
        assert refused.value.headers["Retry-After"] == "4"
        assert _refusals("/r", "full") == before + 1
        assert controller.inflight == 2
        controller.release(0.1)
        await controller.acquire("/r")  # the freed slot is taken again
        assert controller.inflight == 2

    asyncio.run(scenario())


def test_retry_after_grows_while_refusals_outpace_admissions_within_bounds() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        controller = AdmissionController(2, queue_timeout_s=0.0, retry_after_s=1, retry_after_max_s=30, clock=clock)

        async def refusals(count: int) -> list[int]:
            answers = []
            for _ in range(count):
                with pytest.raises(Overloaded) as refused:
                    await controller.acquire("/r")
                answers.append(int(refused.value.headers["Retry-After"]))
            return answers

        await controller.acquire("/r")
        await controller.acquire("/r")
        assert set(await refusals(18)) == {1}  # the first second: 18 refused per 2 admitted
        clock.now += 1.0
        assert set(await refusals(4)) == {3}  # 1 s x sqrt(9)
        clock.now += 1.0
        assert await refusals(1) == [6]  # 4 refused, none admitted: 3 s x sqrt(4)
        clock.now += 1.0
        controller.release(0.1)
        controller.release(0.1)
        await controller.acquire("/r")
        await controller.acquire("/r")
        clock.now += 1.0
        assert await refusals(1) == [3]  # a second of admissions only: halved
        clock.now += 5.0  # a quiet spell: back to the least
        assert await refusals(1) == [1]

    asyncio.run(scenario())


def test_a_queued_request_gets_the_next_released_slot_in_order() -> None:
    async def scenario() -> None:
        controller = AdmissionController(1, queue_timeout_s=5.0)
        controller.hold_s = 0.01  # before any estimate, at most `slots` may queue
        await controller.acquire("/r")
        first = asyncio.create_task(controller.acquire("/r"))
        second = asyncio.create_task(controller.acquire("/r"))
        await asyncio.sleep(0)
        assert controller.queued == 2
        controller.release(0.01)
        await first
        assert not second.done() and controller.inflight == 1
        controller.release(0.01)
        await second
        controller.release(0.01)
        assert (controller.inflight, controller.queued) == (0, 0)

    asyncio.run(scenario())


def test_a_queued_request_without_a_slot_by_the_deadline_is_refused() -> None:
    async def scenario() -> None:
        controller = AdmissionController(1, queue_timeout_s=0.01)
        await controller.acquire("/r")
        before = _refusals("/r", "timeout")
        with pytest.raises(Overloaded):
            await controller.acquire("/r")
        assert _refusals("/r", "timeout") == before + 1
        assert (controller.inflight, controller.queued) == (1, 0)
        controller.release(0.01)
        assert controller.inflight == 0  # the slot went back to the pool, not to the refused waiter

    asyncio.run(scenario())


def test_refuses_at_once_when_the_expected_wait_exceeds_the_queue_timeout() -> None:
    async def scenario() -> None:
        controller = AdmissionController(2, queue_timeout_s=0.5)
        await controller.acquire("/r")
        await controller.acquire("/r")
        controller.hold_s = 0.4  # two slots: the 1st queued expects 0.2 s, the 2nd 0.4 s, the 3rd 0.6 s
        waiting = [asyncio.create_task(controller.acquire("/r")) for _ in range(2)]
        await asyncio.sleep(0)
        assert controller.expected_wait_s() == pytest.approx(0.6)
        with pytest.raises(Overloaded):
            await controller.acquire("/r")
        assert controller.queued == 2
        for _ in range(2):
            controller.release(0.4)
        await asyncio.gather(*waiting)

    asyncio.run(scenario())


def test_a_waiter_cancelled_while_queued_leaves_the_queue() -> None:
    async def scenario() -> None:
        controller = AdmissionController(1, queue_timeout_s=5.0)
        await controller.acquire("/r")
        waiter = asyncio.create_task(controller.acquire("/r"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert controller.queued == 0
        controller.release(0.01)
        assert controller.inflight == 0

    asyncio.run(scenario())


def test_the_limit_falls_on_slow_holds_and_recovers_on_fast_ones_within_bounds() -> None:
    clock = FakeClock()
    controller = AdmissionController(10, 0.1, target_s=0.5, min_inflight=2, clock=clock)
    for _ in range(50):
        controller.inflight += 1
        clock.now += 10.0  # each slow answer in a new window: each one counts
        controller.release(2.0)
    assert controller.slots == 2
    for _ in range(500):
        controller.inflight += 1
        controller.release(0.1)
    assert controller.slots == 10


def test_one_slow_burst_cuts_the_limit_once() -> None:
    clock = FakeClock()
    controller = AdmissionController(10, 0.1, target_s=0.5, clock=clock)
    for _ in range(5):
        controller.inflight += 1
        controller.release(2.0)  # all at the same instant
    assert controller.slots == 9


def test_without_a_target_the_limit_stays_at_the_maximum() -> None:
    controller = AdmissionController(4, 0.1)
    for _ in range(10):
        controller.inflight += 1
        controller.release(30.0)
    assert controller.slots == 4


def test_a_lower_limit_closes_the_released_slot_instead_of_passing_it_on() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        controller = AdmissionController(2, queue_timeout_s=0.01, target_s=0.5, min_inflight=1, clock=clock)
        await controller.acquire("/r")
        await controller.acquire("/r")
        controller.release(2.0)  # slow: the limit falls to 1 and this slot closes
        assert (controller.slots, controller.inflight) == (1, 1)
        with pytest.raises(Overloaded):
            await controller.acquire("/r")

    asyncio.run(scenario())


class ModelSpy:
    """A model client that notes each call and fails it: a request that reaches it was admitted."""

    def __init__(self) -> None:
        self.calls = 0

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        self.calls += 1
        raise ModelUnavailable("spy")

    async def status(self, model: str) -> dict[str, Any]:
        return {"model": model, "status": "ok", "versions": []}


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _app(**settings: Any) -> tuple[TestClient, AdmissionController, ModelSpy]:
    spy = ModelSpy()
    app = create_app(ServingSettings(admission_queue_timeout_ms=0, **settings), backend=lambda: spy)  # type: ignore[arg-type,return-value]
    return TestClient(app), app.state.admission, spy


def _fill(controller: AdmissionController) -> None:
    for _ in range(controller.slots):
        asyncio.run(controller.acquire("/test"))


def test_a_full_api_refuses_classify_with_problem_json_and_retry_after() -> None:
    client, controller, spy = _app(admission_max_inflight=1, admission_retry_after_s=2)
    _fill(controller)
    before = sample("cv_http_requests_total", {"route": "/api/v1/classify", "method": "POST", "status": "503"})
    response = client.post("/classify", files={"image": ("a.jpg", _jpeg(), "image/jpeg")})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    assert response.json()["type"] == "urn:cv-api:problem:overloaded"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert spy.calls == 0  # refused before any model
    after = sample("cv_http_requests_total", {"route": "/api/v1/classify", "method": "POST", "status": "503"})
    assert after == before + 1  # labelled by its route template, though no route ran


@pytest.mark.parametrize("path", ["/detect", "/search"])
def test_detect_and_search_are_guarded_too(path: str) -> None:
    client, controller, spy = _app(admission_max_inflight=1)
    _fill(controller)
    response = client.post(path, files={"image": ("a.jpg", _jpeg(), "image/jpeg")})
    assert (response.status_code, response.json()["type"]) == (503, "urn:cv-api:problem:overloaded")
    assert spy.calls == 0


def test_an_inline_batch_is_guarded_in_its_route() -> None:
    client, controller, spy = _app(admission_max_inflight=1)
    _fill(controller)
    files = [("images", (f"{i}.jpg", _jpeg(), "image/jpeg")) for i in range(2)]
    response = client.post("/batch", files=files, data={"task": "classify", "mode": "inline"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"] == "urn:cv-api:problem:overloaded"
    assert spy.calls == 0


def test_an_admitted_request_reaches_the_model_and_gives_its_slot_back() -> None:
    client, controller, spy = _app(admission_max_inflight=1)
    response = client.post("/classify", files={"image": ("a.jpg", _jpeg(), "image/jpeg")})
    assert response.json()["type"] == "urn:cv-api:problem:model-unavailable"  # the spy's answer, not a refusal
    assert spy.calls == 1
    assert controller.inflight == 0


def test_health_models_metrics_and_jobs_are_never_refused() -> None:
    client, controller, _ = _app(admission_max_inflight=1)
    _fill(controller)
    assert client.get("/health").status_code == 200
    assert client.get("/models").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/jobs/not-a-job").headers.get("x-problem-type") != "overloaded"
    assert "overloaded" not in client.get("/jobs/not-a-job").text


def test_admission_can_be_turned_off() -> None:
    client, controller, spy = _app(admission_enabled=False)
    assert controller is None
    client.post("/classify", files={"image": ("a.jpg", _jpeg(), "image/jpeg")})
    assert spy.calls == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_a_request_at_a_model_is_counted_in_the_process_demand_with_admission_on_or_off(enabled: bool) -> None:
    from services.models.runtime import DEMAND

    client, _, spy = _app(admission_enabled=enabled)
    seen: list[int] = []
    refuse = spy.infer

    async def noting(model: str, items: list[InferenceItem]) -> list[Outcome]:
        seen.append(DEMAND.count)
        return await refuse(model, items)

    spy.infer = noting  # type: ignore[method-assign]
    before = DEMAND.count
    client.post("/classify", files={"image": ("a.jpg", _jpeg(), "image/jpeg")})
    assert seen == [before + 1]
    assert DEMAND.count == before
    client.get("/models")  # not an inference route: never counted
    assert DEMAND.count == before


def test_the_process_demand_follows_the_admitted_requests() -> None:
    # The models' solo sessions and the inline decode read DEMAND: it must count every slot held, handed on or freed.
    from services.models.runtime import DEMAND

    async def scenario() -> None:
        start = DEMAND.count
        controller = AdmissionController(1, queue_timeout_s=5.0)
        controller.hold_s = 0.01
        await controller.acquire("/r")
        assert DEMAND.count == start + 1
        waiter = asyncio.create_task(controller.acquire("/r"))
        await asyncio.sleep(0)
        controller.release(0.01)  # handed to the waiter: still one in flight
        await waiter
        assert DEMAND.count == start + 1
        controller.release(0.01)
        assert DEMAND.count == start

    asyncio.run(scenario())
