"""JPEGs decoded at a reduced scale for the model that reads them (DecodeFloor): sizes, orientation, content."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from services.config import REPO_ROOT
from services.imaging import DecodedImage, DecodeFloor, decode_image
from services.models.catalogue import CATALOGUE, decode_floor, image_params
from services.models.preprocessing import decode_floor as floor_of_spec
from services.models.spec import InputSpec
from services.models.specs.lite0 import lite0_input
from services.models.specs.yolox import detector_input
from tests.unit.fakes import image_bytes

CLASSIFIER = DecodeFloor("shorter", 224)
DETECTOR = DecodeFloor("longer", 416)


def decode(data: bytes, floor: DecodeFloor | None) -> DecodedImage:
    return decode_image(data, declared_type="image/jpeg", max_bytes=1 << 26, max_pixels=40_000_000, floor=floor)


def photo(width: int, height: int, fmt: str = "JPEG", **save: object) -> bytes:
    picture = Image.fromarray(skdata.astronaut()).resize((width, height), Image.Resampling.LANCZOS)
    return image_bytes(picture, fmt, **save)


@pytest.mark.parametrize(
    ("floor", "size", "expected"),
    [
        (CLASSIFIER, (4032, 3024), 8),  # a phone photo: 504 x 378 still covers a 224 crop
        (CLASSIFIER, (1000, 800), 2),  # 1/4 would leave 200 < 224
        (CLASSIFIER, (451, 300), 1),  # scikit-image's chelsea: 150 < 224 at 1/2
        (CLASSIFIER, (448, 448), 2),
        (CLASSIFIER, (447, 448), 1),
        (DETECTOR, (810, 1080), 2),  # bus.jpg's size: the longer side 540 >= 416
        (DETECTOR, (640, 480), 1),  # COCO: 320 < 416
        (DETECTOR, (4032, 3024), 8),
        (CLASSIFIER, (64, 64), 1),  # Tiny-ImageNet
    ],
)
def test_reduction_keeps_the_side_the_model_resizes_from(
    floor: DecodeFloor, size: tuple[int, int], expected: int
) -> None:
    assert floor.reduction(*size) == expected


def test_a_large_jpeg_decodes_reduced_and_reports_its_uploaded_size() -> None:
    data = photo(810, 1080)
    full, reduced = decode(data, None), decode(data, DETECTOR)
    assert (full.width, full.height, full.reduction, full.pixels.shape) == (810, 1080, 1, (1080, 810, 3))
    assert (reduced.width, reduced.height, reduced.reduction) == (810, 1080, 2)
    assert reduced.pixels.shape == (540, 405, 3)
    assert reduced.sha256 == full.sha256 and reduced.byte_size == full.byte_size
    # The same picture: the full decode brought to the reduced size differs little (DCT scaling averages).
    shrunk = np.asarray(Image.fromarray(full.pixels).resize((405, 540), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(shrunk - reduced.pixels.astype(np.float32)).mean() < 3.0


def test_orientation_is_applied_to_the_reduced_pixels_and_the_reported_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1080 x 810, shown rotated a quarter turn: 810 x 1080
    image = decode(photo(1080, 810, exif=exif.tobytes(), quality=90), DETECTOR)
    assert (image.width, image.height, image.reduction) == (810, 1080, 2)
    assert image.pixels.shape == (540, 405, 3)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_only_jpeg_decodes_reduced(fmt: str) -> None:
    data = photo(900, 900, fmt)
    image = decode_image(data, declared_type=None, max_bytes=1 << 26, max_pixels=40_000_000, floor=CLASSIFIER)
    assert image.reduction == 1 and image.pixels.shape == (900, 900, 3) and image.source_size is None


def test_detection_params_carry_the_reduction_other_models_do_not() -> None:
    image = decode(photo(810, 1080), DETECTOR)
    params = {"confidence": 0.25}
    assert image_params("detector", image, params) == {
        "confidence": 0.25,
        "reduction": 2,
        "source_size": (810, 1080),
    }
    assert image_params("classifier", image, params) == params  # classification answers no coordinates
    assert image_params("detector", decode(photo(640, 480), DETECTOR), params) == params


def _stored_input_specs() -> dict[str, list[InputSpec]]:
    artifacts = REPO_ROOT / "artifacts"
    lite0 = [
        lite0_input(json.loads((artifacts / folder / "export.json").read_text()))
        for folder in ("lite0_tiny_imagenet200", "efficientnet_lite0_imagenet1k")
    ]
    return {"classifier": lite0, "embedder": lite0, "detector": [detector_input()]}


def test_every_served_input_is_covered_by_its_catalogue_floor() -> None:
    """A version whose input needs more than its model's floor would get pixels it must upscale: this fails first."""
    specs = _stored_input_specs()
    assert set(specs) == {entry.name for entry in CATALOGUE}
    for name, inputs in specs.items():
        floor = decode_floor(name)
        assert floor is not None
        for spec in inputs:
            needed = floor_of_spec(spec)
            assert needed.side == floor.side and needed.pixels <= floor.pixels, (name, spec)


def test_drift_features_of_a_reduced_decode_keep_the_uploaded_size() -> None:
    """The drift monitor's width and height are the upload's: a reduced decode must not look like a smaller photo."""
    from services.http.recording import ItemRecord
    from services.models.contract import Prediction

    image = decode(photo(810, 1080), DETECTOR)
    prediction = Prediction(model="detector", version="v1", precision="int8", result={"detections": []}, timings_ms={})
    features = ItemRecord(image=image, prediction=prediction, pixels=image.pixels).features()
    assert features is not None
    assert (features["image"]["width"], features["image"]["height"]) == (810.0, 1080.0)
    full = ItemRecord(image=decode(photo(810, 1080), None), prediction=prediction).features()
    assert full is None  # nothing answered on: no pixels, no features
