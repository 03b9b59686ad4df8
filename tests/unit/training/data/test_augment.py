"""The augmentation pipeline: Upscale against the serving resize, train/eval transforms, the grid and its CLI."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from PIL import Image

from services.models.preprocessing import normalise, prepare, resize, resize_and_crop
from services.models.spec import InputSpec
from tests.unit.training.data.conftest import build_tiny_imagenet
from training.data import augment
from training.data.augment import INTERPOLATIONS, Upscale, eval_transform, load_rgb, save_grid, train_transform


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def _method_of(out: np.ndarray, image: np.ndarray, size: int) -> str:
    """Which serving resize produced ``out`` (exactly)."""
    found = [m for m in INTERPOLATIONS if np.array_equal(out, resize(image, size, size, m))]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("method", INTERPOLATIONS)
def test_upscale_with_one_method_is_the_serving_resize(image: np.ndarray, method: str) -> None:
    out = A.Compose([Upscale(224, 224, methods=(method,))])(image=image)["image"]
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, resize(image, 224, 224, method))


def test_upscale_defaults_to_pillow_bicubic(image: np.ndarray) -> None:
    out = A.Compose([Upscale(96, 96)])(image=image)["image"]
    np.testing.assert_array_equal(out, resize(image, 96, 96, "pil_bicubic"))


def test_upscale_of_a_non_contiguous_view(image: np.ndarray) -> None:
    flipped = image[:, ::-1]
    out = Upscale(96, 96).apply(flipped, method="cv2_linear")
    np.testing.assert_array_equal(out, resize(np.ascontiguousarray(flipped), 96, 96, "cv2_linear"))


def test_random_choice_uses_every_method_and_is_reproducible(image: np.ndarray) -> None:
    def run(seed: int) -> list[str]:
        pipeline = A.Compose([Upscale(96, 96, methods=INTERPOLATIONS)], seed=seed)
        return [_method_of(pipeline(image=image)["image"], image, 96) for _ in range(30)]

    first = run(seed=7)
    assert set(first) == set(INTERPOLATIONS)
    assert run(seed=7) == first


def test_weights_steer_the_choice(image: np.ndarray) -> None:
    pipeline = A.Compose([Upscale(96, 96, methods=("pil_bilinear", "cv2_linear"), weights=(0.0, 1.0))], seed=0)
    assert {_method_of(pipeline(image=image)["image"], image, 96) for _ in range(10)} == {"cv2_linear"}


@pytest.mark.parametrize(
    ("methods", "weights", "message"),
    [
        ((), None, "non-empty subset"),
        (("pil_bicubic", "lanczos"), None, "non-empty subset"),
        (("pil_bicubic", "cv2_linear"), (1.0,), "one entry per method"),
        (("pil_bicubic", "cv2_linear"), (1.0, -0.5), "non-negative"),
        (("pil_bicubic", "cv2_linear"), (0.0, 0.0), "positive sum"),
    ],
)
def test_invalid_methods_or_weights_raise(
    methods: tuple[str, ...], weights: tuple[float, ...] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Upscale(96, 96, methods=methods, weights=weights)


def test_upscale_init_args_are_reported() -> None:
    upscale = Upscale(96, 80, methods=("cv2_linear",))
    assert upscale.get_transform_init_args() == {"height": 96, "width": 80, "methods": ("cv2_linear",), "weights": None}


@pytest.mark.parametrize("strength", [1.0, 0.5, 3.0])
def test_train_transform_gives_network_sized_uint8(image: np.ndarray, strength: float) -> None:
    out = train_transform(224, seed=0, strength=strength)(image=image)["image"]
    assert out.shape == (224, 224, 3)
    assert out.dtype == np.uint8


def test_train_transform_is_reproducible_with_a_seed(image: np.ndarray) -> None:
    a, b = train_transform(96, seed=3), train_transform(96, seed=3)
    for _ in range(5):
        np.testing.assert_array_equal(a(image=image)["image"], b(image=image)["image"])


def test_strength_zero_is_a_random_flip_and_a_random_upscale(image: np.ndarray) -> None:
    # Only crop, colour and dropout scale with strength: the flip stays at p=0.5 and
    # Upscale still picks among its three methods.
    pipeline = train_transform(96, seed=0, strength=0.0)
    flipped = np.ascontiguousarray(image[:, ::-1])
    seen = set()
    for _ in range(40):
        out = pipeline(image=image)["image"]
        matches = [
            (method, name)
            for method in INTERPOLATIONS
            for name, source in (("plain", image), ("flipped", flipped))
            if np.array_equal(out, resize(source, 96, 96, method))
        ]
        assert len(matches) == 1, "strength 0 must be exactly a (flipped or not) upscale"
        seen.add(matches[0])
    assert {name for _, name in seen} == {"plain", "flipped"}
    assert {method for method, _ in seen} == set(INTERPOLATIONS)


def test_eval_transform_is_the_serving_crop_path(image: np.ndarray) -> None:
    spec = InputSpec(height=224, width=224, interpolation="pil_bicubic", resize="crop", crop_pct=1.0,
                     mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0))  # fmt: skip
    out = eval_transform(224)(image=image)["image"]
    cropped, scale, offset = resize_and_crop(image, spec)
    assert (scale, offset) == (3.5, (-0.0, -0.0))
    np.testing.assert_array_equal(out, cropped)
    np.testing.assert_array_equal(normalise(out, spec), prepare(image, spec).tensor)


def test_load_rgb_converts_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 6), 200).save(tmp_path / "grey.png")
    rgb = load_rgb(tmp_path / "grey.png")
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8 and (rgb == 200).all()


def test_save_grid_writes_a_png_of_the_right_size(tiny_root: Path, tmp_path: Path) -> None:
    paths = sorted((tiny_root / "train").rglob("*.JPEG"))[:2]
    out = save_grid(paths, tmp_path / "nested" / "grid.png", columns=3, size=96)
    assert out == tmp_path / "nested" / "grid.png"
    with Image.open(out) as grid:
        assert grid.format == "PNG"
        assert grid.size == (3 * 48, 2 * 48)


@pytest.fixture
def cv_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CV_DATA_DIR at a tree holding ``datasets/tiny-imagenet-200``; no mirror."""
    build_tiny_imagenet(tmp_path / "data" / "datasets" / "tiny-imagenet-200")
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tmp_path / "no-mirror"))
    return tmp_path


def test_main_saves_a_grid_of_train_images(cv_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cv_env / "grid.png"
    assert augment.main(["--grid", str(out), "--rows", "2", "--columns", "2", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as grid:
        assert grid.size == (2 * 112, 2 * 112)


def test_main_without_data_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.data.tiny_imagenet import DatasetLayoutError

    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tmp_path / "no-mirror"))
    with pytest.raises(DatasetLayoutError, match=r"download_datasets\.py"):
        augment.main(["--grid", str(tmp_path / "grid.png")])
