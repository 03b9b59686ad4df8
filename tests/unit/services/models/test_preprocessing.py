"""Preprocessing against golden values: normalisation, letterbox, resize-and-crop, the whole pipeline."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from services.models.preprocessing import letterbox, normalise, prepare, resize, resize_and_crop
from services.models.spec import InputSpec, Letterbox
from services.models.specs.lite0 import lite0_input

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The "preprocessing" block of artifacts/efficientnet_lite0_imagenet1k/export.json (training/export.py).
LITE0_REPORT = {
    "preprocessing": {
        "input_size": 224,
        "color_order": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "interpolation": "bicubic",
        "value_range": "0-255 before normalisation",
        "resize": "direct to 224x224, no crop",
    }
}


def gradient(width: int, height: int) -> np.ndarray:
    """An H x W x 3 uint8 image whose every pixel differs from the pad value's neighbourhood."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs % 256, ys % 256, (xs + ys) % 7], axis=-1).astype(np.uint8)


def yolox_spec(align: str = "top-left") -> InputSpec:
    return InputSpec(
        height=416,
        width=416,
        color_order="BGR",
        interpolation="cv2_linear",
        resize="letterbox",
        letterbox=Letterbox(pad_value=114, align=align),  # type: ignore[arg-type]
    )


# --- normalise -------------------------------------------------------------------------------


def test_normalise_applies_scale_mean_std_in_bgr_order() -> None:
    image = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    spec = InputSpec(height=1, width=2, color_order="BGR", scale=2.0, mean=(1, 2, 3), std=(2, 4, 8))
    tensor = normalise(image, spec)
    # BGR pixels (30, 20, 10) and (60, 50, 40); then (x * 2 - mean) / std per channel.
    expected = np.array(
        [
            [[(60 - 1) / 2, (120 - 1) / 2]],
            [[(40 - 2) / 4, (100 - 2) / 4]],
            [[(20 - 3) / 8, (80 - 3) / 8]],
        ],
        dtype=np.float32,
    )
    assert tensor.dtype == np.float32
    assert tensor.shape == (3, 1, 2)
    assert tensor.flags.c_contiguous
    np.testing.assert_allclose(tensor, expected, atol=1e-6)


def test_normalise_rgb_imagenet_statistics() -> None:
    image = np.array([[[255, 0, 128]]], dtype=np.uint8)
    spec = InputSpec(height=1, width=1, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(normalise(image, spec)[:, 0, 0], expected, atol=1e-5)


def test_normalise_identity_spec_keeps_raw_pixel_values() -> None:
    image = gradient(5, 4)
    tensor = normalise(image, InputSpec(height=4, width=5))
    np.testing.assert_array_equal(tensor, image.transpose(2, 0, 1).astype(np.float32))


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalise_gives_the_bits_of_the_hwc_formulation(order: Literal["RGB", "BGR"]) -> None:
    """Channels-first before converting is only faster: each element sees the same float32 operations."""
    image = np.random.default_rng(7).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    spec = InputSpec(height=37, width=53, color_order=order, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    hwc = (image[:, :, ::-1] if order == "BGR" else image).astype(np.float32)
    hwc *= np.float32(spec.scale)
    hwc -= np.asarray(spec.mean, dtype=np.float32)
    hwc /= np.asarray(spec.std, dtype=np.float32)
    tensor = normalise(image, spec)
    assert tensor.dtype == np.float32 and tensor.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(tensor, hwc.transpose(2, 0, 1))


def test_normalise_does_not_modify_its_input() -> None:
    image = gradient(3, 3)
    before = image.copy()
    normalise(image, InputSpec(height=3, width=3, color_order="BGR", mean=(1, 1, 1), std=(2, 2, 2)))
    np.testing.assert_array_equal(image, before)


# --- letterbox -------------------------------------------------------------------------------


def test_letterbox_top_left_640x480_into_416() -> None:
    image = gradient(640, 480)
    canvas, scale, offset = letterbox(image, yolox_spec("top-left"))
    assert scale == pytest.approx(0.65)
    assert offset == (0.0, 0.0)
    assert canvas.shape == (416, 416, 3)
    assert canvas.dtype == np.uint8
    expected = cv2.resize(image, (416, 312), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(canvas[:312], expected)
    assert (canvas[312:] == 114).all()


def test_letterbox_center_640x480_into_416() -> None:
    image = gradient(640, 480)
    canvas, scale, offset = letterbox(image, yolox_spec("center"))
    assert scale == pytest.approx(0.65)
    assert offset == (0.0, 52.0)  # (416 - 312) // 2
    assert (canvas[:52] == 114).all()
    assert (canvas[364:] == 114).all()
    np.testing.assert_array_equal(canvas[52:364], cv2.resize(image, (416, 312), interpolation=cv2.INTER_LINEAR))


def test_letterbox_center_portrait_pads_columns() -> None:
    canvas, scale, offset = letterbox(gradient(480, 640), yolox_spec("center"))
    assert scale == pytest.approx(0.65)
    assert offset == (52.0, 0.0)
    assert (canvas[:, :52] == 114).all()
    assert (canvas[:, 364:] == 114).all()
    assert not (canvas[:, 52:364] == 114).all()


def test_letterbox_uses_configured_pad_value() -> None:
    spec = yolox_spec().model_copy(update={"letterbox": Letterbox(pad_value=0)})
    canvas, _, _ = letterbox(np.full((100, 200, 3), 255, dtype=np.uint8), spec)
    assert (canvas[208:] == 0).all()
    assert (canvas[:208] == 255).all()


def test_letterbox_without_letterbox_spec_raises() -> None:
    with pytest.raises(ValueError, match="letterbox"):
        letterbox(gradient(10, 10), InputSpec(height=8, width=8, resize="letterbox"))


def test_letterbox_very_thin_image_keeps_at_least_one_pixel() -> None:
    canvas, _, _ = letterbox(np.zeros((2000, 1, 3), dtype=np.uint8), yolox_spec())
    assert canvas.shape == (416, 416, 3)


def strided(align: Literal["top-left", "center"] = "top-left") -> InputSpec:
    return yolox_spec(align).model_copy(update={"letterbox": Letterbox(align=align, stride=32)})


def test_a_strided_letterbox_pads_to_whole_strides_and_one_more() -> None:
    """640x480 -> 416x312 in a 416 x 352 canvas (40 rows of 114), not 416 x 416; the same pixels as the whole one."""
    image = gradient(640, 480)
    canvas, scale, offset = letterbox(image, strided())
    whole, _, _ = letterbox(image, yolox_spec("top-left"))
    assert canvas.shape == (352, 416, 3) and scale == pytest.approx(0.65) and offset == (0.0, 0.0)
    np.testing.assert_array_equal(canvas, whole[:352])
    portrait, _, _ = letterbox(gradient(480, 640), strided())
    assert portrait.shape == (416, 352, 3)
    exact, _, _ = letterbox(gradient(520, 400), strided())  # 416 x 320 exactly: still a stride of grey below
    assert exact.shape == (352, 416, 3) and (exact[320:] == 114).all()


def test_a_strided_letterbox_never_exceeds_the_input_and_centres_in_its_canvas() -> None:
    assert letterbox(gradient(416, 416), strided())[0].shape == (416, 416, 3)  # a square fills the input
    assert letterbox(np.zeros((2000, 1, 3), dtype=np.uint8), strided())[0].shape == (416, 64, 3)
    canvas, _, offset = letterbox(gradient(640, 470), strided("center"))  # 416 x 305 -> 352 rows, 23 above
    assert canvas.shape == (352, 416, 3) and offset == (0.0, 23.0)
    assert (canvas[:23] == 114).all() and (canvas[328:] == 114).all()


def test_the_stride_defaults_to_the_whole_input() -> None:
    assert Letterbox().stride == 0


# --- resize and crop -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("crop_pct", "resized", "offset"),
    [(1.0, (299, 224), (-37.0, 0.0)), (0.875, (341, 256), (-58.0, -16.0))],
)
def test_resize_and_crop_640x480(crop_pct: float, resized: tuple[int, int], offset: tuple[float, float]) -> None:
    image = gradient(640, 480)
    spec = InputSpec(height=224, width=224, crop_pct=crop_pct, interpolation="pil_bilinear")
    cropped, scale, got_offset = resize_and_crop(image, spec)
    assert cropped.shape == (224, 224, 3)
    assert scale == pytest.approx(224 / 480 / crop_pct)
    assert got_offset == offset
    full = resize(image, *resized, "pil_bilinear")
    left, top = int(-offset[0]), int(-offset[1])
    # Only the crop is resampled (Pillow's box at the full resize's scale): the same pixels as resize-then-crop but
    # for float rounding, at most 1 level in a few of them.
    difference = np.abs(cropped.astype(int) - full[top : top + 224, left : left + 224].astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


@pytest.mark.parametrize("interpolation", ["pil_bicubic", "pil_bilinear", "cv2_linear"])
def test_resize_and_crop_of_a_square_image_is_a_plain_resize(interpolation: str) -> None:
    image = gradient(64, 64)  # Tiny-ImageNet's shape: every accuracy figure was measured on these
    cropped, _, offset = resize_and_crop(image, InputSpec(height=224, width=224, interpolation=interpolation))
    np.testing.assert_array_equal(cropped, resize(image, 224, 224, interpolation))
    assert offset == (0.0, 0.0)


def test_resize_and_crop_keeps_target_size_for_tiny_images() -> None:
    cropped, scale, _ = resize_and_crop(gradient(3, 2), InputSpec(height=8, width=8))
    assert cropped.shape == (8, 8, 3)
    assert scale == pytest.approx(4.0)


def test_resize_same_size_returns_input() -> None:
    image = gradient(6, 4)
    assert resize(image, 6, 4, "pil_bicubic") is image


@pytest.mark.parametrize("interpolation", ["pil_bicubic", "pil_bilinear", "cv2_linear"])
def test_resize_every_interpolation_gives_requested_shape(interpolation: str) -> None:
    out = resize(gradient(20, 10), 7, 5, interpolation)
    assert out.shape == (5, 7, 3)
    assert out.dtype == np.uint8


# --- prepare ---------------------------------------------------------------------------------


def test_prepare_letterbox_end_to_end() -> None:
    image = gradient(640, 480)
    prepared = prepare(image, yolox_spec("center"))
    assert prepared.tensor.shape == (3, 416, 416)
    assert prepared.tensor.dtype == np.float32
    assert prepared.scale == pytest.approx(0.65)
    assert prepared.offset == (0.0, 52.0)
    assert prepared.original_size == (640, 480)
    # BGR, no scaling: channel 0 of the tensor is the blue channel of the letterboxed image.
    canvas, _, _ = letterbox(image, yolox_spec("center"))
    np.testing.assert_array_equal(prepared.tensor[0], canvas[:, :, 2].astype(np.float32))
    assert (prepared.tensor[:, :52] == 114).all()


def test_prepare_crop_end_to_end() -> None:
    spec = InputSpec(height=32, width=32, scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875)
    prepared = prepare(gradient(80, 40), spec)
    assert prepared.tensor.shape == (3, 32, 32)
    assert prepared.original_size == (80, 40)
    assert prepared.scale == pytest.approx(32 / 40 / 0.875)
    cropped, _, _ = resize_and_crop(gradient(80, 40), spec)
    np.testing.assert_allclose(prepared.tensor, normalise(cropped, spec), atol=0)


# --- golden: classifier preprocessing of a real photograph -----------------------------------


def reference_crop_pipeline(
    image: np.ndarray, size: int, crop_pct: float, scale: float, mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """Independent float64 reimplementation: shorter side to size / crop_pct (bicubic), centre crop."""
    height, width = image.shape[:2]
    factor = size / crop_pct / min(height, width)
    new_w, new_h = round(width * factor), round(height * factor)
    pil = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    pil = pil.crop((left, top, left + size, top + size))
    x = np.asarray(pil, dtype=np.float64) * scale
    x = (x - np.asarray(mean)) / np.asarray(std)
    return x.transpose(2, 0, 1)


@pytest.mark.parametrize(
    ("crop_pct", "scale", "mean", "std"),
    [
        (1.0, 1.0, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),  # EfficientNet-Lite0
        (0.875, 1 / 255, IMAGENET_MEAN, IMAGENET_STD),  # timm's ImageNet default
    ],
    ids=["lite0", "imagenet-0.875"],
)
def test_classifier_preprocessing_of_chelsea_matches_reference(
    crop_pct: float, scale: float, mean: tuple[float, ...], std: tuple[float, ...]
) -> None:
    image = skdata.chelsea()  # 300 x 451 RGB
    spec = InputSpec(height=224, width=224, scale=scale, mean=mean, std=std, crop_pct=crop_pct)  # type: ignore[arg-type]
    prepared = prepare(image, spec)
    expected = reference_crop_pipeline(image, 224, crop_pct, scale, mean, std)
    assert prepared.tensor.shape == expected.shape == (3, 224, 224)
    # One uint8 level in a few pixels at most (resize_and_crop resamples only the crop: float rounding).
    level = scale / min(std)
    difference = np.abs(prepared.tensor - expected)
    assert difference.max() < level + 1e-4 and (difference > 1e-4).mean() < 0.01


def test_lite0_input_spec_reads_export_report() -> None:
    spec = lite0_input(LITE0_REPORT)
    assert (spec.height, spec.width) == (224, 224)
    assert spec.mean == (127.0, 127.0, 127.0)
    assert spec.std == (128.0, 128.0, 128.0)
    assert spec.interpolation == "pil_bicubic"


def test_lite0_preprocessing_of_square_images_matches_training_reference() -> None:
    # training/lite0.py resizes straight to 224x224. Serving resizes the shorter side and centre-crops
    # (crop_pct 1.0), which keeps the aspect ratio of real photos and is identical on square images,
    # such as Tiny-ImageNet's 64x64 ones on which the export was validated.
    image = skdata.chelsea()[:, 75:375]  # 300 x 300
    direct = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BICUBIC), dtype=np.float64)
    expected = ((direct - 127.0) / 128.0).transpose(2, 0, 1)
    prepared = prepare(image, lite0_input(LITE0_REPORT))
    assert np.abs(prepared.tensor - expected).max() < 1e-4
