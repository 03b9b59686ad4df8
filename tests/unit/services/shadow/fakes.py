"""A model client with a production and a shadow version, whose shadow calls can be held at a gate or fail."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from kernel.db.tables import InferenceLogCreate
from kernel.errors import VersionNotFound, error_to_dict
from services.imaging import DecodedImage
from services.index.search import SearchItem, SearchOutcome
from services.models.contract import Prediction
from services.models.worker import InferenceItem, Outcome
from services.shadow.mirror import ShadowCopy, ShadowItem

PRODUCTION, SHADOW = "v1", "v9"


def classified(model: str, version: str, label: str) -> Prediction:
    result = {"predictions": [{"class_id": 0, "label": label, "score": 0.9}]}
    return Prediction(model=model, version=version, precision="fp32", result=result, timings_ms={"predict": 1.0})


class ShadowedModels:
    """Answers ``<version>-answer``: the production version at once; the shadow version, once ``gate`` is open.

    Args:
        shadow_fails: Raised by a call to the shadow version.
        shadow_label: The shadow's label (default: another than production's, so they disagree).
    """

    def __init__(self, *, shadow_fails: Exception | None = None, shadow_label: str | None = None) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.shadow_fails = shadow_fails
        self.shadow_label = shadow_label
        self.stages = {PRODUCTION: "production", SHADOW: "shadow"}
        self.status_fails: Exception | None = None
        self.calls: list[tuple[str | None, int]] = []  # (version asked, images)
        self.shadow_started = asyncio.Event()

    async def status(self, model: str) -> dict[str, Any]:
        if self.status_fails:
            raise self.status_fails
        versions = [{"version": v, "stage": s, "state": "ok"} for v, s in self.stages.items()]
        return {"model": model, "status": "ok", "default_version": PRODUCTION, "versions": versions}

    async def infer(self, model: str, items: list[InferenceItem]) -> list[Outcome]:
        version = items[0].version
        self.calls.append((version, len(items)))
        if version == SHADOW:
            self.shadow_started.set()
            await self.gate.wait()
            if self.shadow_fails:
                raise self.shadow_fails
        if version not in (None, PRODUCTION, SHADOW):
            return [Outcome(error=error_to_dict(VersionNotFound(f"no {version}"))) for _ in items]
        answering = version or PRODUCTION
        label = self.shadow_label if answering == SHADOW and self.shadow_label else f"{answering}-answer"
        return [Outcome(prediction=classified(model, answering, label)) for _ in items]

    async def search(self, items: list[SearchItem]) -> list[SearchOutcome]:
        return [SearchOutcome() for _ in items]

    async def gallery_add(self, item: InferenceItem, metadata: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def gallery_remove(self, item_id: str) -> bool:
        return False

    async def gallery_size(self) -> int:
        return 0


class Writer:
    """The log writer: keeps what it is given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.records: list[InferenceLogCreate] = []

    def submit(self, records: list[InferenceLogCreate]) -> None:
        if self.error:
            raise self.error
        self.records.extend(records)

    def shadow_rows(self) -> list[InferenceLogCreate]:
        return [r for r in self.records if r.shadow]


def image(seed: int = 0) -> DecodedImage:
    pixels = np.full((4, 4, 3), seed, dtype=np.uint8)
    return DecodedImage(pixels=pixels, format="PNG", sha256=f"{seed:064x}", byte_size=100)


def copy(model: str = "classifier", *, images: int = 1, version: str = PRODUCTION) -> ShadowCopy:
    items = [
        ShadowItem(index=i, image=image(i), params={"top_k": 1}, production=classified(model, version, "v1-answer"))
        for i in range(images)
    ]
    return ShadowCopy(model=model, route="/api/v1/classify", items=items, request_id="req-1", client_id="c", tier="t")
