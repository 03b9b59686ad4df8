"""ShadowMirror over a fake model client: the bounded queue, the shadow versions, the rows and the metrics."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from kernel.errors import ModelUnavailable, VersionNotFound
from services.shadow.mirror import ShadowCopy, ShadowMirror
from tests.unit.fakes import sample
from tests.unit.services.shadow.fakes import PRODUCTION, SHADOW, ShadowedModels, Writer, copy


def mirror(models: ShadowedModels, writer: Writer | None = None, **kwargs: object) -> ShadowMirror:
    return ShadowMirror(models, writer or Writer(), models=["classifier"], **kwargs)  # type: ignore[arg-type]


def test_refresh_learns_the_shadow_versions_from_status() -> None:
    models = ShadowedModels()
    shadow = mirror(models)
    asyncio.run(shadow.refresh())
    assert shadow.shadows == {"classifier": (SHADOW,)}
    models.stages[SHADOW] = "production"  # promoted: no api restart, the next reading says so
    asyncio.run(shadow.refresh())
    assert shadow.shadows == {"classifier": ()}


def test_refresh_keeps_what_it_knew_while_status_fails(caplog: pytest.LogCaptureFixture) -> None:
    models = ShadowedModels()
    shadow = mirror(models)
    asyncio.run(shadow.refresh())
    models.status_fails = ModelUnavailable("down")
    with caplog.at_level(logging.WARNING):
        asyncio.run(shadow.refresh())
        asyncio.run(shadow.refresh())
    assert shadow.shadows == {"classifier": (SHADOW,)}
    assert caplog.text.count("model status unavailable") == 1  # once per outage, not every refresh
    models.status_fails = None
    models.stages[SHADOW] = "archived"
    asyncio.run(shadow.refresh())
    assert shadow.shadows == {"classifier": ()}


def test_nothing_is_queued_without_a_shadow_version() -> None:
    shadow = mirror(ShadowedModels())  # never refreshed: no shadow known
    assert shadow.offer(copy()) is False
    assert shadow.queue.qsize() == 0


def test_a_sample_rate_offers_that_share_of_the_requests() -> None:
    draws = iter([0.1, 0.6, 0.3, 0.9])
    shadow = mirror(ShadowedModels(), sample_rate=0.5, draw=lambda: next(draws))
    asyncio.run(shadow.refresh())
    assert [shadow.offer(copy()) for _ in range(4)] == [True, False, True, False]
    assert shadow.queue.qsize() == 2


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    shadow = mirror(ShadowedModels(), queue_size=1)
    asyncio.run(shadow.refresh())
    before = sample("cv_shadow_dropped_total", {"model": "classifier"})
    assert shadow.offer(copy(images=2)) is True
    assert shadow.offer(copy(images=3)) is False  # full: dropped at once, its 3 images counted
    assert shadow.offer(copy(images=1)) is False
    assert sample("cv_shadow_dropped_total", {"model": "classifier"}) - before == 4
    assert shadow.queue.qsize() == 1


def test_the_queued_pixels_are_bounded_too() -> None:
    async def scenario() -> tuple[list[bool], int]:
        # Each fake image is 4 x 4 x 3 = 48 bytes: two fit in 100, a third does not until one has been run.
        shadow = mirror(ShadowedModels(), queue_size=10, queue_bytes=100, refresh_s=3600)
        await shadow.refresh()
        offered = [shadow.offer(copy()), shadow.offer(copy()), shadow.offer(copy())]
        shadow.start()
        await shadow.queue.join()
        offered.append(shadow.offer(copy()))
        await shadow.queue.join()
        await shadow.close()
        return offered, shadow._held_bytes

    before = sample("cv_shadow_dropped_total", {"model": "classifier"})
    assert asyncio.run(scenario()) == ([True, True, False, True], 0)
    assert sample("cv_shadow_dropped_total", {"model": "classifier"}) - before == 1


def test_run_logs_a_shadow_row_per_image_with_its_agreement() -> None:
    models, writer = ShadowedModels(shadow_label="v1-answer"), Writer()
    shadow = mirror(models, writer)
    labels = {"model": "classifier", "version": SHADOW}
    compared = sample("cv_shadow_requests_total", {**labels, "outcome": "compared"})
    agreed = sample("cv_shadow_agreement_sum", labels)
    asyncio.run(shadow.refresh())
    asyncio.run(shadow.run(copy(images=2)))
    assert models.calls == [(SHADOW, 2)]  # one call for the request's images, pinned to the shadow
    rows = writer.records
    assert [(r.shadow, r.version, r.item_index, r.agreement, r.status) for r in rows] == [
        (True, SHADOW, 0, 1.0, 200),
        (True, SHADOW, 1, 1.0, 200),
    ]
    assert {(r.request_id, r.client_id, r.tier, r.route, r.top_label) for r in rows} == {
        ("req-1", "c", "t", "/api/v1/classify", "v1-answer")
    }
    assert rows[1].image_sha256 == f"{1:064x}"
    assert sample("cv_shadow_requests_total", {**labels, "outcome": "compared"}) - compared == 2
    assert sample("cv_shadow_agreement_sum", labels) - agreed == 2.0
    assert sample("cv_shadow_duration_seconds_count", labels) >= 1


def test_a_failing_shadow_becomes_error_rows_and_a_count() -> None:
    models, writer = ShadowedModels(shadow_fails=RuntimeError("boom")), Writer()
    shadow = mirror(models, writer)
    errors = sample("cv_shadow_requests_total", {"model": "classifier", "version": SHADOW, "outcome": "error"})
    asyncio.run(shadow.refresh())
    asyncio.run(shadow.run(copy()))
    (row,) = writer.records
    assert (row.shadow, row.status, row.error_type, row.agreement) == (True, 503, "model-unavailable", None)
    after = sample("cv_shadow_requests_total", {"model": "classifier", "version": SHADOW, "outcome": "error"})
    assert after - errors == 1


def test_a_shadow_error_outcome_and_a_short_answer_are_errors_too() -> None:
    models, writer = ShadowedModels(), Writer()
    shadow = mirror(models, writer)
    shadow.shadows["classifier"] = ("v404",)  # demoted or unloaded since the last reading: VersionNotFound
    asyncio.run(shadow.run(copy()))
    assert writer.records[0].status == 404

    async def short(model: str, items: list[object]) -> list[object]:
        return []

    models.infer = short  # type: ignore[method-assign,assignment]
    asyncio.run(shadow.run(copy()))
    assert writer.records[1].error_type == "model-unavailable"


def test_the_production_version_is_never_its_own_shadow() -> None:
    models = ShadowedModels()
    shadow = mirror(models)
    asyncio.run(shadow.refresh())
    asyncio.run(shadow.run(copy(version=SHADOW)))  # a fallback made the shadow answer the caller
    assert models.calls == []


def test_an_answer_that_cannot_be_compared_is_counted_so() -> None:
    models, writer = ShadowedModels(), Writer()
    shadow = mirror(models, writer)
    shadow.shadows["embedder"] = (SHADOW,)
    labels = {"model": "embedder", "version": SHADOW, "outcome": "incomparable"}
    before = sample("cv_shadow_requests_total", labels)
    original = copy("embedder")
    item = original.items[0]
    embedded = item.production.model_copy(update={"result": {"embedding": [1.0, 0.0]}})
    # The shadow answers with labels, production with a vector: nothing to compare.
    asyncio.run(shadow.run(replace(original, items=[replace(item, production=embedded)])))
    assert writer.records[0].agreement is None
    assert sample("cv_shadow_requests_total", labels) - before == 1


def test_a_failing_log_writer_does_not_stop_the_mirror(caplog: pytest.LogCaptureFixture) -> None:
    shadow = mirror(ShadowedModels(), Writer(error=RuntimeError("full")))
    asyncio.run(shadow.refresh())
    with caplog.at_level(logging.ERROR):
        asyncio.run(shadow.run(copy()))
    assert "shadow: inference log record failed" in caplog.text


def test_the_workers_drain_the_queue_until_closed() -> None:
    async def scenario() -> tuple[int, int]:
        models, writer = ShadowedModels(), Writer()
        shadow = mirror(models, writer, refresh_s=3600, concurrency=2)
        shadow.start()
        shadow.start()  # idempotent
        while not shadow.shadows.get("classifier"):
            await asyncio.sleep(0)
        for _ in range(3):
            shadow.offer(copy())
        await shadow.queue.join()
        await shadow.close()
        await shadow.close()
        return len(writer.records), len(models.calls)

    assert asyncio.run(scenario()) == (3, 3)


def test_a_copy_that_breaks_the_run_does_not_end_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> int:
        writer = Writer()
        shadow = mirror(ShadowedModels(), writer, refresh_s=3600)
        await shadow.refresh()
        broken, run = copy(), shadow.run

        async def failing_on_broken(given: ShadowCopy) -> None:
            if given is broken:
                raise RuntimeError("a bug")
            await run(given)

        shadow.run = failing_on_broken  # type: ignore[method-assign,assignment]
        shadow.start()
        shadow.offer(broken)
        shadow.offer(copy())
        await shadow.queue.join()
        await shadow.close()
        return len(writer.records)

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(scenario()) == 1
    assert "shadow copy failed" in caplog.text


def test_production_answers_are_not_touched() -> None:
    models = ShadowedModels()
    original = copy()
    shadow = mirror(models)
    asyncio.run(shadow.refresh())
    asyncio.run(shadow.run(original))
    assert original.items[0].production.version == PRODUCTION
    assert original.items[0].production.result["predictions"][0]["label"] == "v1-answer"


def test_a_service_error_raised_by_the_client_keeps_its_status() -> None:
    models, writer = ShadowedModels(shadow_fails=VersionNotFound("v9 is not loaded")), Writer()
    shadow = mirror(models, writer)
    asyncio.run(shadow.refresh())
    asyncio.run(shadow.run(copy()))
    assert (writer.records[0].status, writer.records[0].error_type) == (404, "version-not-found")
