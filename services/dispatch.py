"""BentoML's adaptive batching in the model services, without its learned idle wait (ADR 0020).

BentoML's dispatcher (``bentoml._internal.marshal.dispatcher``, BentoML pinned in pyproject.toml) keeps two things
about a batchable API: the cost of a batch of ``n``, ``o_a * n + o_b`` (a least-squares fit of the last 50 batches),
with which it sheds a request that cannot run within ``max_latency_ms``; and ``wait``, the mean time the last 50
batches waited in its queue. While the model is free and fewer than ``max_batch_size`` calls are queued, it holds them
back for up to that mean wait, expecting more. Under load the queue wait is long, because batches queue behind the
one that runs; once the load drops, a lone call is held back for that long, and since the holding back is itself
logged as wait, the mean shrinks by only 5 % per refresh (every 5 s at most). Measured on the model-service topology
(benchmarks/reports/dispatch_wait.md): classify at concurrency 1 took a 15 ms p50 before a burst at concurrency 16
and 60-70 ms after it, for minutes.

:class:`RunWhenFree` keeps the cost fit (and so the shedding) and pins ``wait`` at 0: a batch starts as soon as the
model is free and takes whatever is queued, up to ``max_batch_size`` (what the api's own micro-batcher does,
services/clients/batching.py). Under load calls still merge, while the previous batch runs.
"""

from __future__ import annotations

from bentoml._internal.marshal import dispatcher

__all__ = ["RunWhenFree", "run_when_free"]


class RunWhenFree(dispatcher.Optimizer):
    """BentoML's batching optimizer with its learned wait pinned at zero (its batch-cost fit is kept)."""

    @property  # type: ignore[override]  # an attribute in BentoML's class
    def wait(self) -> float:
        return 0.0

    @wait.setter
    def wait(self, _learned: float) -> None:
        """The learned mean queue wait is dropped: holding a call back for it only delays it."""


def run_when_free() -> None:
    """Make every BentoML dispatcher created from now on in this process use :class:`RunWhenFree`.

    The dispatchers are made when the service's app is built, after its module is imported: the model services call
    this at import (services/model_service.py). Idempotent.
    """
    dispatcher.Optimizer = RunWhenFree  # type: ignore[misc]  # CorkDispatcher looks the name up when it is made
