"""The asynchronous client: the same calls as :class:`cv_client.Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from cv_client import calls
from cv_client.client import DEFAULT_TIMEOUT, PAGE, Clock, _options, headers, merge_pages
from cv_client.config import RetryPolicy, resolve_api_key, resolve_base_url
from cv_client.errors import JobTimeout, error_from_response, retry_after_seconds
from cv_client.images import ImageInput
from cv_client.models import (
    BatchResult,
    ClassifyResult,
    DetectResult,
    DriftReport,
    ExperimentResult,
    ExperimentsResult,
    FeedbackResult,
    GalleryItem,
    GallerySize,
    HealthResult,
    Job,
    ModelsResult,
    SearchResult,
    Task,
)
from cv_client.progress import Progress

T = TypeVar("T")


class AsyncClient:
    """The cv-api over HTTP, for asyncio; arguments as :class:`cv_client.Client` (``sleep`` is awaited)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers(resolve_api_key(api_key)), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: calls.Call[T]) -> T:
        waited = 0.0
        retry = 0
        while True:
            response = await self._http.request(
                call.method,
                call.path,
                data=call.data or None,
                files=call.files or None,
                params=call.params or None,
                json=call.json,
            )
            if response.is_success or response.status_code in call.ok:
                return call.parse(response)
            if response.status_code in self.retry.statuses:
                wait = self.retry.delay(retry=retry, retry_after=retry_after_seconds(response), waited=waited)
                if wait is not None:
                    await self._sleep(wait)
                    waited += wait
                    retry += 1
                    continue
            raise error_from_response(response)

    async def classify(self, image: ImageInput, top_k: int = 5, version: str | None = None) -> ClassifyResult:
        """The top-k labels of one image."""
        return await self._run(calls.classify(image, top_k=top_k, version=version))

    async def detect(
        self,
        image: ImageInput,
        confidence: float | None = None,
        iou: float | None = None,
        max_detections: int | None = None,
        classes: Sequence[int] | None = None,
        version: str | None = None,
    ) -> DetectResult:
        """Objects in one image; parameters left None take the server's defaults."""
        return await self._run(
            calls.detect(
                image,
                confidence=confidence,
                iou=iou,
                max_detections=max_detections,
                classes=classes,
                version=version,
            )
        )

    async def search(self, image: ImageInput, top_k: int = 5, expand: int | None = None) -> SearchResult:
        """The gallery images most similar to one image (``expand``: as :meth:`Client.search`)."""
        return await self._run(calls.search(image, top_k=top_k, expand=expand))

    async def gallery_add(self, image: ImageInput, metadata: dict[str, Any] | None = None) -> GalleryItem:
        """Add an image (and a JSON object stored with it) to the search gallery."""
        return await self._run(calls.gallery_add(image, metadata=metadata))

    async def gallery_size(self) -> GallerySize:
        """How many images the gallery holds."""
        return await self._run(calls.gallery_size())

    async def gallery_remove(self, item_id: str) -> None:
        """Remove an image from the gallery."""
        await self._run(calls.gallery_remove(item_id))

    async def batch(self, images: Sequence[ImageInput], task: Task, **options: Any) -> BatchResult:
        """One task over several images, answered now."""
        return await self._run(calls.batch(images, task, **_options(options)))

    async def submit_batch(self, images: Sequence[ImageInput], task: Task, **options: Any) -> Job:
        """Submit a batch job; follow it with :meth:`wait`."""
        return await self._run(calls.submit_batch(images, task, **_options(options)))

    async def job(self, job_id: str, *, offset: int = 0, limit: int = 100) -> Job:
        """A job's progress and one page of its items."""
        return await self._run(calls.job(job_id, offset=offset, limit=limit))

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel the job's pending items."""
        return await self._run(calls.cancel_job(job_id))

    async def wait(
        self, job: str | Job, poll_interval: float = 1.0, timeout: float | None = None, progress: bool = True
    ) -> Job:
        """Poll a job until it finishes; the job with all its items (:class:`JobTimeout` past ``timeout``)."""
        job_id = job if isinstance(job, str) else job.id
        bar = Progress(progress, description=f"job {job_id[:8]}")
        clock = Clock()
        try:
            while True:
                state = await self.job(job_id, limit=0)
                bar.update(state.done, state.item_count)
                if state.finished:
                    break
                if timeout is not None and clock.elapsed() + poll_interval > timeout:
                    raise JobTimeout(job_id, timeout)
                await self._sleep(poll_interval)
                clock.slept(poll_interval)
        finally:
            bar.close()
        pages = [await self.job(job_id, offset=0, limit=PAGE)]
        while pages[-1].next_offset is not None:
            pages.append(await self.job(job_id, offset=pages[-1].next_offset, limit=PAGE))
        return merge_pages(state, pages)

    async def experiments(self) -> ExperimentsResult:
        """Every A/B experiment, newest first."""
        return await self._run(calls.experiments())

    async def experiment(self, experiment_id: str) -> ExperimentResult:
        """One A/B experiment with its analysis."""
        return await self._run(calls.experiment(experiment_id))

    async def feedback(
        self, request_id: str, *, label: str | None = None, correct: bool | None = None, item_index: int = 0
    ) -> FeedbackResult:
        """Say whether an answer was right: the correct ``label``, or ``correct`` (thumbs up/down)."""
        return await self._run(calls.feedback(request_id, label=label, correct=correct, item_index=item_index))

    async def models(self) -> ModelsResult:
        """Every model with its versions, stages and load state."""
        return await self._run(calls.models())

    async def drift(self, model: str, *, window: int | None = None, version: str | None = None) -> DriftReport:
        """The latest ``window`` requests of ``model`` (of ``version``) against its reference: tests and verdict."""
        return await self._run(calls.drift(model, window=window, version=version))

    async def health(self) -> HealthResult:
        """The server's health (returned, not raised, on a 503 with its status)."""
        return await self._run(calls.health())
