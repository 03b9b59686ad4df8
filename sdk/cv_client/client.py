"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from cv_client import calls
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
PAGE = 1000  # the most items GET /jobs/{id} returns at once
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "cv-client/0.1.0"


def headers(api_key: str | None) -> dict[str, str]:
    """The headers every request carries."""
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json, application/problem+json"}
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    return sent


def merge_pages(first: Job, pages: Sequence[Job]) -> Job:
    """The job as last seen, with every page's items."""
    last = pages[-1] if pages else first
    items = [item for page in pages for item in page.items]
    return last.model_copy(update={"items": items, "next_offset": None})


class Clock:
    """Time spent waiting for a job: the wall clock, or the sleeps where the sleep is a test's fake."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._slept = 0.0

    def slept(self, seconds: float) -> None:
        self._slept += seconds

    def elapsed(self) -> float:
        return max(time.monotonic() - self._started, self._slept)


class Client:
    """The cv-api over HTTP.

    Args:
        base_url: The server (``http://host:3000``) or its API root (``.../api/v1``); default ``CV_API_URL``,
            then ``http://127.0.0.1:3000``.
        api_key: Sent as ``Authorization: Bearer``; default ``CV_API_KEY``.
        timeout: Seconds per request (an ``httpx.Timeout`` for finer control).
        retry: Retries of 429 and 503 answers.
        transport: An httpx transport (tests pass an ``httpx.MockTransport``).
        sleep: How to wait between retries and polls (tests pass a fake).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers(resolve_api_key(api_key)), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: calls.Call[T]) -> T:
        waited = 0.0
        retry = 0
        while True:
            response = self._http.request(
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
                    self._sleep(wait)
                    waited += wait
                    retry += 1
                    continue
            raise error_from_response(response)

    def classify(self, image: ImageInput, top_k: int = 5, version: str | None = None) -> ClassifyResult:
        """The top-k labels of one image."""
        return self._run(calls.classify(image, top_k=top_k, version=version))

    def detect(
        self,
        image: ImageInput,
        confidence: float | None = None,
        iou: float | None = None,
        max_detections: int | None = None,
        classes: Sequence[int] | None = None,
        version: str | None = None,
    ) -> DetectResult:
        """Objects in one image; parameters left None take the server's defaults (0.25, 0.45, 100, all)."""
        return self._run(
            calls.detect(
                image,
                confidence=confidence,
                iou=iou,
                max_detections=max_detections,
                classes=classes,
                version=version,
            )
        )

    def search(self, image: ImageInput, top_k: int = 5, expand: int | None = None) -> SearchResult:
        """The gallery images most similar to one image.

        ``expand``: query expansion, the nearest gallery images added to the query first (0: none; None: the
        embedder version's setting).
        """
        return self._run(calls.search(image, top_k=top_k, expand=expand))

    def gallery_add(self, image: ImageInput, metadata: dict[str, Any] | None = None) -> GalleryItem:
        """Add an image (and a JSON object stored with it) to the search gallery."""
        return self._run(calls.gallery_add(image, metadata=metadata))

    def gallery_size(self) -> GallerySize:
        """How many images the gallery holds (the server offers no listing)."""
        return self._run(calls.gallery_size())

    def gallery_remove(self, item_id: str) -> None:
        """Remove an image from the gallery; :class:`NotFound` when it is not there."""
        self._run(calls.gallery_remove(item_id))

    def batch(self, images: Sequence[ImageInput], task: Task, **options: Any) -> BatchResult:
        """One task over several images, answered now (each item its result or problem).

        ``options``: top_k (classify); confidence, iou, max_detections, classes (detect); version.
        """
        return self._run(calls.batch(images, task, **_options(options)))

    def submit_batch(self, images: Sequence[ImageInput], task: Task, **options: Any) -> Job:
        """Submit a batch job (202); follow it with :meth:`wait`. Options as :meth:`batch`."""
        return self._run(calls.submit_batch(images, task, **_options(options)))

    def job(self, job_id: str, *, offset: int = 0, limit: int = 100) -> Job:
        """A job's progress and one page of its items."""
        return self._run(calls.job(job_id, offset=offset, limit=limit))

    def cancel_job(self, job_id: str) -> Job:
        """Cancel the job's pending items."""
        return self._run(calls.cancel_job(job_id))

    def wait(
        self, job: str | Job, poll_interval: float = 1.0, timeout: float | None = None, progress: bool = True
    ) -> Job:
        """Poll a job until it finishes; the job with all its items.

        Raises:
            JobTimeout: Not finished within ``timeout`` seconds.
        """
        job_id = job if isinstance(job, str) else job.id
        bar = Progress(progress, description=f"job {job_id[:8]}")
        clock = Clock()
        try:
            while True:
                state = self.job(job_id, limit=0)
                bar.update(state.done, state.item_count)
                if state.finished:
                    break
                if timeout is not None and clock.elapsed() + poll_interval > timeout:
                    raise JobTimeout(job_id, timeout)
                self._sleep(poll_interval)
                clock.slept(poll_interval)
        finally:
            bar.close()
        pages = [self.job(job_id, offset=0, limit=PAGE)]
        while pages[-1].next_offset is not None:
            pages.append(self.job(job_id, offset=pages[-1].next_offset, limit=PAGE))
        return merge_pages(state, pages)

    def experiments(self) -> ExperimentsResult:
        """Every A/B experiment, newest first."""
        return self._run(calls.experiments())

    def experiment(self, experiment_id: str) -> ExperimentResult:
        """One A/B experiment with its analysis."""
        return self._run(calls.experiment(experiment_id))

    def feedback(
        self, request_id: str, *, label: str | None = None, correct: bool | None = None, item_index: int = 0
    ) -> FeedbackResult:
        """Say whether an answer was right: the correct ``label``, or ``correct`` (thumbs up/down)."""
        return self._run(calls.feedback(request_id, label=label, correct=correct, item_index=item_index))

    def models(self) -> ModelsResult:
        """Every model with its versions, stages and load state."""
        return self._run(calls.models())

    def drift(self, model: str, *, window: int | None = None, version: str | None = None) -> DriftReport:
        """The latest ``window`` requests of ``model`` (of ``version``) against its reference: tests and verdict."""
        return self._run(calls.drift(model, window=window, version=version))

    def health(self) -> HealthResult:
        """The server's health; returned (not raised) when the server answers 503 with its status."""
        return self._run(calls.health())


BATCH_OPTIONS = frozenset({"top_k", "confidence", "iou", "max_detections", "classes", "version"})


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """Every batch option, None where not given; a misspelt one is refused here rather than ignored."""
    unknown = set(options) - BATCH_OPTIONS
    if unknown:
        raise TypeError(f"unknown batch option(s): {', '.join(sorted(unknown))}")
    return {name: options.get(name) for name in BATCH_OPTIONS}
