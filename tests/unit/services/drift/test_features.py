"""The per-request drift features: image statistics on synthetic and real photos, the answer's top-1, the sketch."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from services.drift.features import IMAGE_FEATURES, image_statistics, request_features
from services.models.contract import Prediction


def prediction(result: dict[str, object], sketch: list[float] | None = None) -> Prediction:
    return Prediction(model="m", version="v1", precision="int8", result=result, timings_ms={}, sketch=sketch)


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def test_a_flat_grey_image_has_no_contrast_saturation_or_edges() -> None:
    found = image_statistics(np.full((30, 40, 3), 128, dtype=np.uint8))
    assert found == {
        "width": 40.0,
        "height": 30.0,
        "brightness": pytest.approx(128 / 255, abs=1e-4),
        "contrast": 0.0,
        "saturation": 0.0,
        "blur": 0.0,
    }


def test_pure_red_is_fully_saturated_and_black_is_not() -> None:
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    assert image_statistics(red)["saturation"] == pytest.approx(1.0)
    assert image_statistics(np.zeros((8, 8, 3), dtype=np.uint8))["saturation"] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_saturation_is_the_mean_of_max_minus_min_over_max_of_the_thumbnails_channels(seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    pixels[:5] = 0  # black rows: saturation 0, not a division by zero
    small = np.asarray(pixels[::3, ::3], dtype=np.float32) / 255.0  # the 64-pixel thumbnail: every 3rd pixel
    high, low = small.max(axis=2), small.min(axis=2)
    expected = float(((high - low) / np.maximum(high, 1e-6)).mean())
    assert image_statistics(pixels)["saturation"] == round(expected, 5)


def test_a_checkerboard_is_sharp_and_high_contrast() -> None:
    board = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)
    found = image_statistics(np.stack([board] * 3, axis=2))
    assert found["contrast"] == pytest.approx(0.5, abs=1e-3)
    assert found["blur"] == pytest.approx(4.0, abs=1e-3)  # |4 neighbours - 4 * centre| = 4 everywhere


def test_tiny_images_have_no_laplacian() -> None:
    assert image_statistics(np.zeros((2, 2, 3), dtype=np.uint8))["blur"] == 0.0


def test_statistics_refuse_a_grey_array() -> None:
    with pytest.raises(ValueError, match="H x W x 3"):
        image_statistics(np.zeros((4, 4), dtype=np.uint8))


@pytest.mark.parametrize("name", ["chelsea.jpg", "astronaut.png", "coffee.jpg", "rocket.jpg"])
def test_real_photos_move_as_their_shifts_say(photos: dict[str, bytes], name: str) -> None:
    image = Image.open(io.BytesIO(photos[name])).convert("RGB")
    pixels = np.asarray(image, dtype=np.uint8)
    base = image_statistics(pixels)
    assert base["width"] == image.width and base["height"] == image.height
    assert 0 < base["brightness"] < 1 and 0 < base["contrast"] < 0.5 and 0 < base["blur"] < 4
    dark = image_statistics(np.asarray(ImageEnhance.Brightness(image).enhance(0.5)))
    blurred = image_statistics(np.asarray(image.filter(ImageFilter.GaussianBlur(2))))
    grey = image_statistics(np.asarray(image.convert("L").convert("RGB")))
    assert dark["brightness"] == pytest.approx(base["brightness"] / 2, rel=0.05)
    assert dark["contrast"] < base["contrast"]
    assert blurred["blur"] < base["blur"]
    assert grey["saturation"] < 0.01 < base["saturation"]


def test_request_features_of_a_classification_are_json_ready() -> None:
    answer = prediction(
        {"predictions": [{"label": "cat", "score": 0.7, "class_id": 3}, {"label": "dog", "score": 0.2, "class_id": 4}]},
        sketch=[0.1] * 32,
    )
    found = request_features(np.zeros((10, 12, 3), dtype=np.uint8), answer)
    assert found["label"] == "cat" and found["confidence"] == 0.7 and found["sketch"] == [0.1] * 32
    assert set(found["image"]) == set(IMAGE_FEATURES)
    assert json.loads(json.dumps(found)) == found


def test_request_features_of_a_detection_take_the_best_box() -> None:
    boxes = [{"label": "person", "score": 0.4}, {"label": "dog", "score": 0.9}]
    found = request_features(np.zeros((10, 12, 3), dtype=np.uint8), prediction({"detections": boxes}))
    assert (found["label"], found["confidence"], found["sketch"]) == ("dog", 0.9, None)


def test_request_features_without_boxes_or_classes_have_no_label() -> None:
    results: list[dict[str, object]] = [{"detections": []}, {"embedding": [0.6, 0.8], "dim": 2}]
    for result in results:
        found = request_features(np.zeros((4, 4, 3), dtype=np.uint8), prediction(result))
        assert found["label"] is None and found["confidence"] is None
