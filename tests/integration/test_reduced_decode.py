"""The real models on photos decoded at a reduced scale (imaging.DecodeFloor) answer what the full decode answers."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from services.clients.threaded import ThreadedClient
from services.imaging import DecodedImage, decode_image
from services.models.catalogue import decode_floor, image_params
from services.models.detection import box_iou
from services.models.worker import InferenceItem

pytestmark = pytest.mark.integration


def jpeg(picture: Any, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decode(data: bytes, model: str | None) -> DecodedImage:
    floor = decode_floor(model) if model else None
    return decode_image(data, declared_type="image/jpeg", max_bytes=1 << 26, max_pixels=40_000_000, floor=floor)


def answer(backend: ThreadedClient, model: str, image: DecodedImage, params: dict[str, Any]) -> dict[str, Any]:
    item = InferenceItem(image=image.pixels, params=image_params(model, image, params))
    (outcome,) = asyncio.run(backend.infer(model, [item]))
    assert outcome.prediction is not None, outcome.error
    return outcome.prediction.result


def boxes(result: dict[str, Any]) -> list[tuple[int, list[float]]]:
    return [(d["class_id"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")]) for d in result["detections"]]


def test_detector_boxes_of_a_reduced_decode_land_on_the_full_decodes(local_backend: ThreadedClient) -> None:
    """bus.jpg's size (810 x 1080) decodes at 1/2 for the 416-px detector; boxes come back in the upload's pixels."""
    data = jpeg(skdata.astronaut(), (810, 1080))
    full, reduced = decode(data, None), decode(data, "detector")
    assert reduced.reduction == 2
    # 0.5: the astronaut's second box (class 74, "clock") scores 0.27-0.54 across the two decodes and the
    # two canvases (detector v1's 416 x 416: 0.32 / 0.54; v2's 416 x 352: 0.27 / 0.49), so at 0.3 it compared noise.
    params = {"confidence": 0.5}
    expected, got = (
        boxes(answer(local_backend, "detector", full, params)),
        boxes(answer(local_backend, "detector", reduced, params)),
    )
    assert expected and [c for c, _ in got] == [c for c, _ in expected]
    for (_, a), (_, b) in zip(expected, got, strict=True):
        assert box_iou(np.asarray(a), np.asarray([b]))[0] > 0.9, (a, b)
        assert max(b[2], b[0]) <= 810 and max(b[3], b[1]) <= 1080


def test_classifier_and_embedder_of_a_reduced_phone_photo(local_backend: ThreadedClient) -> None:
    """A 4032 x 3024 photo decodes at 1/8 (504 x 378) for the 224-px models: the same leading classes at nearly the
    same scores, a near embedding. (Classifier v6 puts chelsea between tabby and Egyptian cat, 0.48 and 0.45, so the
    order of the two may swap between decodes; each score moves by 0.03.)"""
    data = jpeg(skdata.chelsea(), (4032, 3024))
    full, reduced = decode(data, None), decode(data, "classifier")
    assert reduced.reduction == 8 and (reduced.width, reduced.height) == (4032, 3024)
    top = [
        {p["label"]: p["score"] for p in answer(local_backend, "classifier", image, {"top_k": 2})["predictions"]}
        for image in (full, reduced)
    ]
    assert top[0].keys() == top[1].keys()
    assert all(abs(top[0][label] - top[1][label]) < 0.05 for label in top[0]), top
    vectors = [np.asarray(answer(local_backend, "embedder", image, {})["embedding"]) for image in (full, reduced)]
    assert float(vectors[0] @ vectors[1]) > 0.98
