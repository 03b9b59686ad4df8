"""benchmarks/formats.py --quick on tiny ONNX graphs built here: the reports and their structure, not timings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import formats, formats_eager, formats_plans, formats_report
from services.models.catalogue import MODEL_NAMES
from tests.unit.conftest import write_tiny_onnx

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ONNX2TORCH = HAVE_TORCH and importlib.util.find_spec("onnx2torch") is not None
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def static_onnx(path: Path, batch: int | str = "N", size: int = 8) -> Path:
    """The tiny per-channel-mean graph with fixed H and W (the benchmark makes inputs of the file's size)."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(write_tiny_onnx(path, batch=batch)))
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.Clear()
        dim.dim_value = size
    onnx.save(model, str(path))
    return path


def metrics_file(path: Path, model: str, task: str, fp32: dict[str, float], int8: dict[str, float]) -> Path:
    report = {
        "model": model,
        "version": "v7",
        "task": task,
        "title": "tiny",
        "arch": "mean",
        "summary": "s",
        "intended_use": "tests",
        "model_licence": "Apache-2.0",
        "source": "here",
        "data": {"training": "none", "evaluation": "none", "licences": [{"name": "none", "licence": "none"}]},
        "metrics": {"fp32": fp32},
        "files": {"fp32": {"name": "tiny.onnx"}},
        "provenance": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    if int8:
        path.with_name("quantization.json").write_text(
            json.dumps({"metrics": {"int8": int8}, "output": {"file": "tiny.int8.onnx"}})
        )
    return path


class MeanModule:
    """What the tiny graph computes, in torch; ``offset`` makes it disagree."""

    def __init__(self, offset: float = 0.0) -> None:
        import torch

        self.module = torch.nn.Sequential()  # for state_dict(); no weights
        self.offset = offset

    def __call__(self, x: Any) -> Any:
        return x.mean(dim=(2, 3)) + self.offset

    def state_dict(self) -> dict[str, Any]:
        return {}


def mean_eager(offset: float = 0.0) -> Any:
    def build(plan: formats_eager.ModelPlan) -> formats_eager.Eager:
        return formats_eager.Eager(MeanModule(offset))

    return build


def refuse(plan: formats_eager.ModelPlan) -> formats_eager.Eager:
    raise formats_eager.NotMeasured("no PyTorch model in this test")


@pytest.fixture
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings folders of our own, so no real artifact or mirror file is picked up as a default."""
    for name in ("ARTIFACTS_DIR", "DATA_DIR", "MODEL_MIRROR_DIR"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(f"CV_{name}", str(folder))
    return tmp_path


@pytest.fixture
def quick_run(hermetic: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One --quick run over the three models on tiny graphs; returns the paths and the parsed JSON."""
    files = hermetic / "files"
    files.mkdir()
    dynamic, fixed = static_onnx(files / "tiny.onnx"), static_onnx(files / "tiny_b1.onnx", batch=1)
    cls_metrics = metrics_file(
        hermetic / "cls" / "metrics.json", "classifier", "classification", {"top1": 0.61}, {"top1": 0.6}
    )
    det_metrics = metrics_file(hermetic / "det" / "metrics.json", "detector", "detection", {"map50_95": 0.3}, {})
    builders = {
        "classifier": mean_eager() if HAVE_TORCH else refuse,
        "detector": formats_eager.eager_from_onnx,
        "embedder": refuse,
    }
    monkeypatch.setattr(formats, "EAGER_BUILDERS", builders)
    out = hermetic / "reports" / "formats.md"
    argv = [
        "--quick",
        "--threads",
        "1",
        "--out",
        str(out),
        "--classifier-onnx",
        str(dynamic),
        "--classifier-int8",
        str(dynamic),
        "--classifier-metrics",
        str(cls_metrics),
        "--detector-onnx",
        str(fixed),
        "--detector-metrics",
        str(det_metrics),
        "--embedder-onnx",
        str(dynamic),
        "--embedder-metrics",
        str(hermetic / "absent.json"),
    ]
    assert formats.main(argv) == 0
    return {
        "md": out,
        "json": out.with_suffix(".json"),
        "png": out.with_suffix(".png"),
        "data": json.loads(out.with_suffix(".json").read_text()),
    }


def test_quick_run_writes_markdown_json_and_png(quick_run: dict[str, Any]) -> None:
    assert quick_run["png"].read_bytes().startswith(PNG_SIGNATURE)
    data = quick_run["data"]
    assert data["settings"] == {
        "threads": 1,
        "iterations": 3,
        "warmup": 1,
        "batches": [1, 8],
        "formats": list(formats.FORMATS),
        "parity_tolerance": formats.PARITY_TOLERANCE,
        "quick": True,
    }
    assert set(data["models"]) == set(MODEL_NAMES)
    for key in ("cpu", "cores", "threads", "onnxruntime", "torch", "date", "benchmark wall time"):
        assert key in data["machine"]


def test_every_measured_format_has_each_batch(quick_run: dict[str, Any]) -> None:
    for model in quick_run["data"]["models"].values():
        assert set(model["formats"]) == set(formats.FORMATS)
        for result in model["formats"].values():
            if result["status"] == "measured":
                assert set(result["batches"]) == {"1", "8"}
                for point in result["batches"].values():
                    assert point["p50_ms"] > 0 and point["p95_ms"] >= point["p50_ms"] and point["throughput"] > 0
            else:
                assert result["status"] == "not measured" and result["reason"]


def test_onnx_formats_are_measured_and_missing_ones_say_why(quick_run: dict[str, Any]) -> None:
    models = quick_run["data"]["models"]
    assert models["classifier"]["formats"]["onnx-int8"]["status"] == "measured"
    assert models["classifier"]["files"]["onnx-int8"]["bytes"] > 0
    assert models["embedder"]["formats"]["onnx-int8"]["reason"] == "no INT8 file (training/quantize.py makes one)"
    assert models["embedder"]["formats"]["pytorch"]["reason"] == "no PyTorch model in this test"
    assert models["detector"]["formats"]["tensorrt-int8"]["reason"] == "no INT8 (Q/DQ) file to build from"
    if not HAVE_TENSORRT:
        assert "TensorRT is not installed" in models["classifier"]["formats"]["tensorrt-fp16"]["reason"]


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_eager_pytorch_is_measured_when_it_matches_onnx(quick_run: dict[str, Any]) -> None:
    eager = quick_run["data"]["models"]["classifier"]["formats"]["pytorch"]
    assert eager["status"] == "measured"
    assert eager["parity_max_abs_diff"] < 1e-5


@pytest.mark.skipif(not HAVE_ONNX2TORCH, reason="onnx2torch not installed")
def test_onnx2torch_gives_the_detector_an_eager_column(quick_run: dict[str, Any]) -> None:
    eager = quick_run["data"]["models"]["detector"]["formats"]["pytorch"]
    assert eager["status"] == "measured" and eager["parity_max_abs_diff"] < 1e-4  # float32 means of 0..255


def test_fixed_batch_file_is_run_image_by_image_and_says_so(quick_run: dict[str, Any]) -> None:
    detector = quick_run["data"]["models"]["detector"]
    assert detector["fixed_batch"] == 1
    assert detector["formats"]["onnx-fp32"]["status"] == "measured"
    assert "fixes its batch at 1" in quick_run["md"].read_text()


def test_accuracy_is_read_from_the_metrics_and_quantization_files(quick_run: dict[str, Any]) -> None:
    models = quick_run["data"]["models"]
    accuracy = models["classifier"]["accuracy"]
    assert (accuracy["metric"], accuracy["fp32"], accuracy["int8"], accuracy["version"]) == ("top1", 0.61, 0.6, "v7")
    assert accuracy["measured_on"] == {"fp32": "tiny.onnx", "int8": "tiny.int8.onnx"}
    assert models["detector"]["accuracy"]["int8"] is None
    assert models["embedder"]["accuracy"] is None


def test_markdown_report_has_the_tables(quick_run: dict[str, Any]) -> None:
    text = quick_run["md"].read_text()
    assert text.startswith("# Format benchmark")
    assert "**--quick** mode" in text
    for heading in ("## Machine", "## Method", *(f"## {name}" for name in MODEL_NAMES), "## Plot"):
        assert heading in text
    assert "| format | batch | p50 ms | p95 ms | images/s | size MB | top-1 | note |" in text
    assert "| mAP@0.5:0.95 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| onnx-int8 | 8 |")]
    assert len(rows) == 1 and "0.6 (v7, `tiny.int8.onnx`)" in rows[0]
    assert "- **embedder**" not in text and "- **pytorch**: not measured: no PyTorch model in this test" in text
    assert "![latency and throughput per format](formats.png)" in text


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_eager_that_disagrees_with_onnx_is_not_reported(hermetic: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "EAGER_BUILDERS", {**formats.EAGER_BUILDERS, "embedder": mean_eager(offset=1.0)})
    onnx_path = static_onnx(hermetic / "tiny.onnx")
    args = formats.parse_args(
        ["--quick", "--models", "embedder", "--formats", "pytorch", "--embedder-onnx", str(onnx_path)]
    )
    result = formats.run(args)["models"]["embedder"]["formats"]["pytorch"]
    assert result["status"] == "not measured"
    assert "differ from ONNX FP32 (max abs diff 1)" in result["reason"]


def test_eager_without_the_train_extra_is_not_measured(hermetic: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(plan: formats_eager.ModelPlan) -> formats_eager.Eager:
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(formats, "EAGER_BUILDERS", {**formats.EAGER_BUILDERS, "classifier": missing})
    args = formats.parse_args(
        [
            "--quick",
            "--models",
            "classifier",
            "--formats",
            "pytorch",
            "--classifier-onnx",
            str(static_onnx(hermetic / "tiny.onnx")),
        ]
    )
    result = formats.run(args)["models"]["classifier"]["formats"]["pytorch"]
    assert result == {"status": "not measured", "reason": "timm is not installed (the train extra)"}


def test_detector_defaults_to_dynamic_batch_files_then_to_the_mirror(hermetic: Path) -> None:
    from services.config import ServingSettings

    settings = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    fp32, int8, notes = formats_plans.detector_files(settings)
    assert fp32 == settings.model_mirror_dir / "yolox_nano.onnx" and int8 is None
    assert "the batch-1 mirror file `yolox_nano.onnx` is used" in notes[0]

    static_onnx(settings.data_dir / "yolox_nano.onnx", batch=1)  # fixed batch: not a dynamic export
    dynamic = static_onnx(settings.data_dir / "yolox_nano.dynamic.onnx")
    quantized = static_onnx(settings.artifacts_dir / "yolox_nano" / "yolox_nano.int8.onnx")
    assert formats_plans.detector_files(settings) == (dynamic, quantized, [])


def test_plans_prefer_the_served_fine_tune_and_pair_int8_with_its_own_fp32(hermetic: Path) -> None:
    from services.config import ServingSettings
    from services.models.specs.lite0 import SERVED, finetuned_dir

    settings = ServingSettings(_env_file=None)  # type: ignore[call-arg]
    tiny = settings.artifacts_dir / finetuned_dir(SERVED)  # the served release
    static_onnx(tiny / "model.onnx")
    static_onnx(tiny / "model.int8.onnx")
    plans = {p.name: p for p in formats_plans.build_plans(formats.parse_args([]), settings)}
    assert plans["classifier"].fp32 == tiny / "model.onnx" and plans["classifier"].int8 == tiny / "model.int8.onnx"
    assert plans["classifier"].metrics == tiny / "metrics.json"
    assert plans["embedder"].fp32 == settings.artifacts_dir / "efficientnet_lite0_imagenet1k" / "model.onnx"

    other = static_onnx(hermetic / "other.onnx")
    (given,) = formats_plans.build_plans(
        formats.parse_args(["--models", "classifier", "--classifier-onnx", str(other)]), settings
    )
    assert (given.fp32, given.int8) == (other, None)


def test_parse_args_quick_and_limits(capsys: pytest.CaptureFixture[str]) -> None:
    full = formats.parse_args([])
    assert (full.batches, full.iterations, full.warmup, full.threads) == ([1, 8, 32], 50, 10, 2)
    quick = formats.parse_args(["--quick", "--batches", "1", "32"])
    assert (quick.batches, quick.iterations, quick.warmup) == ([1, 32], 3, 1)
    with pytest.raises(SystemExit):
        formats.parse_args(["--batches", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_input_shape_needs_fixed_channels_and_size(tmp_path: Path) -> None:
    assert formats.input_shape(static_onnx(tmp_path / "a.onnx", size=16)) == (None, (3, 16, 16))
    with pytest.raises(ValueError, match="fixed C, H, W"):
        formats.input_shape(write_tiny_onnx(tmp_path / "b.onnx"))


def test_one_at_a_time_slices_by_the_fixed_batch() -> None:
    calls: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.sum(axis=(1, 2, 3))[:, None]

    x = np.ones((5, 1, 2, 2), dtype=np.float32)
    np.testing.assert_array_equal(formats.one_at_a_time(run, 2)(x), np.full((5, 1), 4.0))
    assert calls == [2, 2, 1]
    assert formats.one_at_a_time(run, None) is run


def test_tensorrt_fp16_accuracy_is_never_borrowed_from_fp32() -> None:
    accuracy = {"metric": "top1", "version": "v1", "fp32": 0.5, "int8": None, "measured_on": {"fp32": "m.onnx"}}
    assert formats_report._accuracy_cell("tensorrt-fp16", accuracy) == "not measured"
    assert formats_report._accuracy_cell("onnx-int8", accuracy) == "not measured"
    assert formats_report._accuracy_cell("pytorch", accuracy) == "0.5 (v1, `m.onnx`)"
    assert formats_report._accuracy_cell("pytorch", None) == "-"


@pytest.fixture
def fine_tuned_state(tmp_path: Path) -> Path:
    """A random 200-class timm tf_efficientnet_lite0 state dict, saved as a Lightning module would ("model." keys)."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=200)
    path = tmp_path / "lite0_200.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def test_eager_lite0_loads_a_fine_tuned_state_dict(fine_tuned_state: Path) -> None:
    plan = formats_eager.ModelPlan("classifier", Path("unused.onnx"), torch_state=fine_tuned_state)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    classifier = formats_eager.eager_classifier(plan)
    assert classifier(x).shape == (2, 200)
    assert classifier.weights_bytes > 10_000_000  # 4.65 M parameters in float32, less the 1000-class head
    embeddings = formats_eager.eager_embedder(plan)(x)
    assert embeddings.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_tensorrt_column_wiring_with_a_fake_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, list[int]]] = []

    def build_engine(source: Path, out: Path, *, precision: str, batches: list[int]) -> Path:
        built.append((precision, batches))
        out.write_bytes(b"engine" * 10)
        return out

    def measure_latency(engine: Path, batches: list[int], *, iterations: int, warmup: int) -> dict[int, Any]:
        return {b: {"p50_ms": 1.0, "p95_ms": 2.0, "throughput": 100.0 * b} for b in batches}

    monkeypatch.setattr("training.tensorrt.build_engine", build_engine)
    monkeypatch.setattr("training.tensorrt.measure_latency", measure_latency)
    args = formats.parse_args(["--quick"])
    inputs = {b: np.zeros((b, 3, 8, 8), dtype=np.float32) for b in (1, 8)}
    dynamic = formats.measure_tensorrt(tmp_path / "m.onnx", "fp16", inputs, None, args)
    assert dynamic["size_bytes"] == 60 and set(dynamic["batches"]) == {1, 8} and dynamic["note"] == ""
    fixed = formats.measure_tensorrt(tmp_path / "m.int8.onnx", "int8", inputs, 1, args)
    assert set(fixed["batches"]) == {1} and fixed["note"] == "batch fixed at 1: only batch 1 measured"
    assert built == [("fp16", [1, 8]), ("int8", [1])]
    with pytest.raises(formats_eager.NotMeasured, match="fixed at 1"):
        formats.measure_tensorrt(tmp_path / "m.onnx", "fp16", {8: inputs[8]}, 1, args)
