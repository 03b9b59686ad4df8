"""services/models/resample.py: Pillow's bytes, byte for byte, from the compiled passes; Pillow itself as fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from services.models import resample
from services.models.preprocessing import resize_and_crop
from services.models.specs.lite0 import lite0_input

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR
LITE0 = {"input_size": 224, "color_order": "RGB", "mean": [127.0] * 3, "std": [128.0] * 3}  # export.json's block


def pillow(image: np.ndarray, size: tuple[int, int], filt: int, box: resample.Box | None = None) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size, filt, box=box))


@pytest.fixture
def native() -> None:
    if not resample.native_enabled():
        pytest.fail("services/models/_resample.c is not built here: `pip install -e .` builds it (setup.py)")


def test_the_compiled_passes_are_built_and_used() -> None:
    """CI installs the project as the README says; the speed-up must not vanish silently with a failed build."""
    assert resample._resample is not None
    assert resample.native_enabled()


@pytest.mark.parametrize("filt", [BICUBIC, BILINEAR])
def test_random_sizes_and_boxes_give_pillows_bytes(native: None, filt: int) -> None:
    """Up and down, one axis or both, either pass first (Pillow 13 chooses), with and without a box; noise and
    smooth images (noise makes the intermediate clip, smooth images round near the halves)."""
    rng = np.random.default_rng(7)
    for trial in range(400):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        out_w, out_h = (int(v) for v in rng.integers(1, 200, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 2:
            image = pillow(image, (w, h), BILINEAR) if min(h, w) > 1 else image
            image = np.ascontiguousarray(image)
        box = None
        if trial % 3 == 0 and w > 1 and h > 1:
            x0, y0 = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
            box = (x0, y0, rng.uniform(x0 + 0.5, w), rng.uniform(y0 + 0.5, h))
        expected = pillow(image, (out_w, out_h), filt, box)
        got = resample.resize(image, (out_w, out_h), filt, box)
        assert got.shape == expected.shape and got.dtype == np.uint8
        assert np.array_equal(got, expected), (h, w, out_w, out_h, box)


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee", "rocket"])
def test_photos_through_the_classifiers_crop_give_pillows_bytes(native: None, name: str) -> None:
    """The serving path: the shorter side to 224 and the centre 224 x 224, only the crop resampled."""
    image = np.ascontiguousarray(getattr(skdata, name)())
    spec = lite0_input({"preprocessing": LITE0})
    assert spec.crop_pct == 1.0 and spec.interpolation == "pil_bicubic"
    cropped, _, _ = resize_and_crop(image, spec)
    h, w = image.shape[:2]
    scale = 224 / min(h, w)
    new_w, new_h = max(224, round(w * scale)), max(224, round(h * scale))
    sx, sy = new_w / w, new_h / h
    left, top = (new_w - 224) // 2, (new_h - 224) // 2
    box = (left / sx, top / sy, (left + 224) / sx, (top + 224) / sy)
    assert np.array_equal(cropped, pillow(image, (224, 224), BICUBIC, box))


def test_the_horizontal_pass_reads_only_the_rows_the_crop_needs(native: None) -> None:
    """A box near the bottom: the first pass starts mid-image, the second counts its rows from there."""
    image = np.ascontiguousarray(skdata.astronaut()[:, :, :3])
    box = (100.25, 380.5, 480.0, 505.75)
    assert np.array_equal(resample.resize(image, (90, 31), BICUBIC, box), pillow(image, (90, 31), BICUBIC, box))


def test_vertical_first_follows_the_installed_pillow() -> None:
    from PIL import __version__

    shrinks_height = resample.vertical_first(300, 200, 50, 190)
    assert shrinks_height is (int(__version__.split(".")[0]) >= 13)
    assert not resample.vertical_first(300, 400, 250, 100)  # the width shrinks more
    assert not resample.vertical_first(100, 100, 200, 50)  # the height grows


def test_the_same_size_is_a_copy(native: None) -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    got = resample.resize(image, (5, 4), BICUBIC)
    assert np.array_equal(got, image) and got is not image


def test_a_non_contiguous_view_gives_the_same_bytes(native: None) -> None:
    image = np.ascontiguousarray(skdata.coffee())[::2, 10:-10]
    assert np.array_equal(resample.resize(image, (64, 48), BICUBIC), pillow(image, (64, 48), BICUBIC))


def test_what_it_does_not_cover_goes_to_pillow(native: None) -> None:
    """Other filters, other shapes and dtypes: Pillow's result or Pillow's error, unchanged."""
    image = np.ascontiguousarray(skdata.chelsea())
    lanczos = resample.resize(image, (100, 70), Image.Resampling.LANCZOS)
    assert np.array_equal(lanczos, pillow(image, (100, 70), Image.Resampling.LANCZOS))
    grey = np.ascontiguousarray(skdata.camera())
    assert np.array_equal(resample.resize(grey, (64, 64), BICUBIC), pillow(grey, (64, 64), BICUBIC))
    with pytest.raises(ValueError):
        resample.resize(image, (10, 10), BICUBIC, box=(50, 50, 20, 80))  # Pillow's own check of the box


def test_configure_turns_it_off_and_back_on(native: None) -> None:
    """What the services do at start-up with ``ServingSettings.native_resample`` (``CV_NATIVE_RESAMPLE``)."""
    try:
        assert resample.configure(False) is False and not resample.native_enabled()
        assert resample.configure(True) is True and resample.native_enabled()
    finally:
        resample.configure(True)


def test_configure_cannot_turn_on_what_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_usable", False)
    monkeypatch.setattr(resample, "_native", False)
    assert resample.configure(True) is False


def test_turned_off_it_is_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turned off, or a Pillow it disagrees with: no compiled call at all."""
    monkeypatch.setattr(resample, "_native", False)
    calls: list[object] = []
    monkeypatch.setattr(resample, "_native_resize", lambda *args: calls.append(args))
    image = np.ascontiguousarray(skdata.chelsea())
    assert np.array_equal(resample.resize(image, (80, 60), BICUBIC), pillow(image, (80, 60), BICUBIC))
    assert calls == []


def test_a_pillow_that_resizes_otherwise_turns_it_off(native: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The import-time check compares with the installed Pillow: the wrong order of passes is caught."""
    assert resample._agrees_with_pillow()
    monkeypatch.setattr(resample, "vertical_first", lambda *sizes: False)
    monkeypatch.setattr(resample, "_PILLOW_13", True)
    from PIL import __version__

    if int(__version__.split(".")[0]) >= 13:
        assert not resample._agrees_with_pillow()


def test_the_compiled_call_checks_its_arguments(native: None) -> None:
    """A caller's mistake is a ValueError, never a read outside a buffer."""
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    out = np.empty((5, 5, 3), dtype=np.uint8)
    bounds, weights = resample.coefficients(10, 0.0, 10.0, 5, BICUBIC)
    call = resample._resample.resample
    with pytest.raises(ValueError, match="src"):
        call(image[:5].tobytes(), 10, 10, out, 5, 5, 0, 10, True, True, False, bounds, weights, weights.shape[1],
             bounds, weights, weights.shape[1])  # fmt: skip
    wide = bounds.copy()
    wide[0] = (8, weights.shape[1])
    with pytest.raises(ValueError, match="horizontal bound"):
        call(image, 10, 10, out, 5, 5, 0, 10, True, True, False, wide, weights, weights.shape[1], bounds, weights,
             weights.shape[1])  # fmt: skip
    with pytest.raises(ValueError, match="vertical bound"):
        call(image, 10, 10, out, 5, 5, 0, 10, True, True, False, bounds, weights, weights.shape[1], wide, weights,
             weights.shape[1])  # fmt: skip
    with pytest.raises(ValueError, match="inconsistent"):
        call(image, 10, 10, out, 5, 5, 0, 11, True, True, False, bounds, weights, weights.shape[1], bounds, weights,
             weights.shape[1])  # fmt: skip
    with pytest.raises(TypeError):
        call(image, 10, 10, b"read-only", 5, 5, 0, 10, True, True, False, bounds, weights, 1, bounds, weights, 1)


def test_coefficients_are_cached_and_read_only() -> None:
    first = resample.coefficients(300, 0.0, 300.0, 224, BICUBIC)
    assert resample.coefficients(300, 0.0, 300.0, 224, BICUBIC) is first
    bounds, weights = first
    assert not bounds.flags.writeable and not weights.flags.writeable
    # each row of weights sums to one in fixed point, give or take the rounding of each tap
    assert np.all(np.abs(weights.sum(axis=1) - (1 << resample.FRACTION_BITS)) <= weights.shape[1])
