"""Routes: POST /search and the gallery (POST, GET, DELETE /gallery)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from kernel.errors import InvalidParameter, NotFound, error_from_dict
from kernel.logging import get_request_id
from services.http.deps import BackendDep, LimitsDep, read_image
from services.http.inference import ImageFile, image_info
from services.http.schemas import (
    GalleryItemResponse,
    GallerySizeResponse,
    ModelRef,
    SearchHit,
    SearchResponse,
)
from services.index.search import SearchItem
from services.models.catalogue import decode_floor
from services.models.spec import MAX_QUERY_EXPANSION
from services.models.worker import InferenceItem

router = APIRouter(tags=["similarity search"])
Expand = Annotated[
    int | None,
    Form(
        ge=0,
        le=MAX_QUERY_EXPANSION,
        description=(
            "Query expansion: how many of the query's nearest gallery images are added to it (weighted by their "
            "similarity) before the search; 0 searches with the query alone; default: the embedder version's setting "
            "(v2 to v8: 0). Helps when the gallery holds more images of the query's class than this: with embedder "
            "v2, 10 raised precision@10 by 0.4 to 1.3 points on galleries of 25 and 50 per class, 30 lost 1 point on "
            "25 (docs/adr/0015-query-expansion-for-the-class-embedder.md); with v8, 10 raised it 1.3 points on 50"
        ),
    ),
]


@router.post("/search", response_model=SearchResponse)
async def search(
    limits: LimitsDep,
    backend: BackendDep,
    image: ImageFile,
    top_k: Annotated[int, Form(ge=1, le=100)] = 5,
    expand: Expand = None,
) -> SearchResponse:
    """Find the gallery images most similar to this one (cosine similarity).

    With query expansion (``expand``, by default the embedder version's own setting) the query is first moved towards
    its nearest gallery images, and the scores are cosines with that expanded query.
    409 when the gallery was built by another embedder version: its vectors are not comparable.
    """
    started = time.perf_counter()
    decoded = await read_image(image, limits, decode_floor("embedder"))
    decode_ms = (time.perf_counter() - started) * 1000
    item = SearchItem(image=decoded.pixels, top_k=top_k, expand=expand, request_id=get_request_id())
    (outcome,) = await backend.search([item])
    if outcome.prediction is None:
        raise error_from_dict(outcome.error or {})
    prediction = outcome.prediction
    return SearchResponse(
        request_id=get_request_id(),
        model=ModelRef(name=prediction.model, version=prediction.version, precision=prediction.precision),
        image=image_info(decoded),
        results=[SearchHit.model_validate(hit) for hit in outcome.hits],
        gallery_size=outcome.gallery_size,
        query_expansion=outcome.expand,
        timings_ms={"decode": decode_ms, **prediction.timings_ms, "total": (time.perf_counter() - started) * 1000},
    )


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """The ``metadata`` form field: a JSON object (422 otherwise)."""
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"metadata is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidParameter("metadata must be a JSON object")
    return value


@router.post("/gallery", response_model=GalleryItemResponse, status_code=201)
async def gallery_add(
    limits: LimitsDep,
    backend: BackendDep,
    image: ImageFile,
    metadata: Annotated[str | None, Form(description="A JSON object stored with the image")] = None,
) -> GalleryItemResponse:
    """Add an image and its metadata to the search gallery (409 if the gallery holds another embedder's vectors)."""
    meta = parse_metadata(metadata)
    decoded = await read_image(image, limits, decode_floor("embedder"))
    meta.setdefault("filename", image.filename)
    meta.setdefault("sha256", decoded.sha256)
    added = await backend.gallery_add(InferenceItem(image=decoded.pixels, request_id=get_request_id()), meta)
    return GalleryItemResponse(
        id=added["id"], model=ModelRef(name=added["model"], version=added["version"], precision="fp32"), metadata=meta
    )


@router.get("/gallery", response_model=GallerySizeResponse)
async def gallery_size(backend: BackendDep) -> GallerySizeResponse:
    """How many images the gallery holds."""
    return GallerySizeResponse(size=await backend.gallery_size())


@router.delete("/gallery/{item_id}", status_code=204)
async def gallery_remove(item_id: str, backend: BackendDep) -> Response:
    """Remove one image from the gallery."""
    if not await backend.gallery_remove(item_id):
        raise NotFound(f"gallery has no image {item_id!r}")
    return Response(status_code=204)
