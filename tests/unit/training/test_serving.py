"""The bridge from the offline tools to the serving pipeline: specs, models, image decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.models.catalogue import MODEL_NAMES, UnknownModel
from services.models.classification import Classifier
from services.models.detection import YoloxDetector
from services.models.embedding import Embedder
from services.models.specs.yolox import detector_input
from training import serving
from training.serving import Kind
from training.settings import TrainingSettings

REPO = Path(__file__).resolve().parents[3]


def test_read_rgb_decodes_like_an_upload(tmp_path: Path) -> None:
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent: composited on white as uploads are
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = serving.read_rgb(tmp_path / "a.png")
    assert pixels.shape == (5, 7, 3) and pixels.dtype == np.uint8
    assert (pixels == 255).all()


def test_detector_spec_is_the_served_one(tmp_path: Path) -> None:
    spec = serving.serving_spec("detector", tmp_path / "x.onnx", tmp_path, precision="int8")
    assert spec.input == detector_input(stride=0)  # no such file: the whole canvas, which any file can take
    assert spec.files == {"int8": "x.onnx"} and spec.output_name == "output" and len(spec.labels) == 80


def test_a_detector_file_of_symbolic_size_letterboxes_to_whole_strides(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    def write(path: Path, height: int | str, width: int | str) -> Path:
        image = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, height, width])
        out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, height, width])
        graph = helper.make_graph([helper.make_node("Relu", ["images"], ["output"])], "g", [image], [out])
        onnx.save(helper.make_model(graph), str(path))
        return path

    fixed = serving.serving_spec("detector", write(tmp_path / "f.onnx", 416, 416), tmp_path)
    free = serving.serving_spec("detector", write(tmp_path / "d.onnx", "height", "width"), tmp_path)
    assert fixed.input == detector_input(stride=0) and free.input == detector_input()
    assert free.input.letterbox is not None and free.input.letterbox.stride == 32


def test_kinds_are_the_catalogue_names_and_others_are_refused(tmp_path: Path) -> None:
    assert serving.KINDS == MODEL_NAMES
    with pytest.raises(UnknownModel, match="segmenter"):
        serving.serving_spec("segmenter", tmp_path / "x.onnx", tmp_path)


@pytest.mark.parametrize(("kind", "task", "output"), [("classifier", "classification", "logits"),
                                                      ("embedder", "embedding", "embeddings")])  # fmt: skip
def test_lite0_spec_comes_from_the_export_report_next_to_the_file(
    tmp_path: Path, kind: Kind, task: str, output: str
) -> None:
    report = {"preprocessing": {"input_size": 96, "color_order": "RGB", "mean": [1, 2, 3], "std": [4, 5, 6]}}
    (tmp_path / "export.json").write_text(json.dumps(report))
    spec = serving.serving_spec(kind, tmp_path / "m.onnx", tmp_path / "no-artifacts")
    assert (spec.task, spec.output_name) == (task, output)
    assert (spec.input.height, spec.input.mean, spec.input.std) == (96, (1, 2, 3), (4, 5, 6))


def test_lite0_without_its_own_report_uses_the_committed_export(tmp_path: Path) -> None:
    committed = REPO / "artifacts" / "efficientnet_lite0_imagenet1k"
    assert serving.lite0_export_dir(tmp_path / "m.onnx", REPO / "artifacts") == committed
    spec = serving.serving_spec("embedder", tmp_path / "m.onnx", REPO / "artifacts")
    assert spec.input.height == 224 and spec.input.mean == (127.0, 127.0, 127.0)


@pytest.mark.parametrize(
    ("kind", "family"), [("classifier", Classifier), ("embedder", Embedder), ("detector", YoloxDetector)]
)
def test_build_model_gives_the_registry_family_over_onnx_runtime(kind: Kind, family: type) -> None:
    settings = TrainingSettings(artifacts_dir=REPO / "artifacts")
    path = (
        settings.model_mirror_dir / "yolox_nano.onnx"
        if kind == "detector"
        else settings.artifacts_dir / "efficientnet_lite0_imagenet1k" / "model.onnx"
    )
    if not path.is_file():
        pytest.skip(f"{path} not available")
    spec = serving.serving_spec(kind, path, settings.artifacts_dir, precision="int8")
    model = serving.build_model(spec, path, precision="int8")
    assert type(model) is family and model.precision == "int8"
    (prediction,) = model.infer([np.full((60, 80, 3), 128, np.uint8)], [model.params_type()])
    assert prediction.precision == "int8"


def test_an_embedder_over_a_classifier_file_reads_the_logits_as_class_probabilities() -> None:
    from services.models.spec import EmbeddingOutput

    path = REPO / "artifacts" / "lite0_tiny_imagenet200" / "model.int8.onnx"
    head = EmbeddingOutput(transform="softmax")
    spec = serving.serving_spec("embedder", path, REPO / "artifacts", precision="int8", embedding=head)
    assert spec.output_name == "logits" and spec.embedding == head
    (prediction,) = serving.build_model(spec, path).infer(
        [np.full((64, 64, 3), 90, np.uint8)], [Embedder.params_type()]
    )
    vector = np.asarray(prediction.result["embedding"])
    assert prediction.result["dim"] == 200 and (vector >= 0).all() and np.linalg.norm(vector) == pytest.approx(1.0)
