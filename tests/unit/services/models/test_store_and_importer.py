"""The BentoML model store round trip: import, idempotence, conflicts, listing, the import CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import Stage
from services.models.importer import main, verify_checksum
from services.models.spec import InputSpec, ModelSpec
from services.models.store import import_model, list_versions, sha256_file


def _spec(version: str) -> ModelSpec:
    return ModelSpec(
        name="unit-store-model",
        version=version,
        task="embedding",
        arch="efficientnet_lite0",
        input=InputSpec(height=8, width=8),
        output_name="y",
        files={"fp32": "m.onnx"},
    )


def test_import_is_idempotent_and_refuses_other_files_without_force(tmp_path: Path) -> None:
    first = tmp_path / "m.onnx"
    first.write_bytes(b"one")
    assert import_model(_spec("v1"), {"fp32": first}) == "unit-store-model:v1"
    assert import_model(_spec("v1"), {"fp32": first}) == "unit-store-model:v1"
    first.write_bytes(b"two")
    with pytest.raises(FileExistsError):
        import_model(_spec("v1"), {"fp32": first})
    import_model(_spec("v1"), {"fp32": first}, force=True)
    (entry,) = [e for e in list_versions("unit-store-model") if e.spec.version == "v1"]
    assert entry.spec.sha256["fp32"] == sha256_file(first)
    assert entry.paths["fp32"].read_bytes() == b"two"


def test_list_versions_of_an_unknown_model_is_empty() -> None:
    assert list_versions("no-such-model-anywhere") == []


def test_verify_checksum(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    verify_checksum(path, sha256_file(path))
    with pytest.raises(ValueError, match="expected"):
        verify_checksum(path, "0" * 64)
    with pytest.raises(FileNotFoundError, match="CV_MODEL_MIRROR_DIR"):
        verify_checksum(tmp_path / "missing", "0" * 64)


def test_importer_main_parses_flags_and_imports(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"cli")
    seen = {}

    def build(args, settings):  # type: ignore[no-untyped-def]
        seen.update(version=args.version, stage=args.stage)
        return _spec(args.version).model_copy(update={"stage": Stage(args.stage)}), {"fp32": path}

    tag = main("test", "v1", build, ["--version", "v7", "--stage", "canary"])
    assert tag == "unit-store-model:v7" and seen == {"version": "v7", "stage": "canary"}
    (entry,) = [e for e in list_versions("unit-store-model") if e.spec.version == "v7"]
    assert entry.spec.stage == "canary"


def test_set_stage_rewrites_the_spec_and_the_label_and_list_versions_sees_it(tmp_path: Path) -> None:
    import bentoml

    from services.models.store import set_stage

    path = tmp_path / "m.onnx"
    path.write_bytes(b"stage")
    spec = _spec("v8").model_copy(update={"name": "unit-stage-model", "stage": Stage.SHADOW})
    import_model(spec, {"fp32": path})
    before = bentoml.models.get("unit-stage-model:v8").info.creation_time
    assert set_stage("unit-stage-model", "v8", Stage.PRODUCTION).stage == Stage.PRODUCTION
    (entry,) = list_versions("unit-stage-model")
    assert entry.spec.stage == Stage.PRODUCTION and entry.paths["fp32"].read_bytes() == b"stage"
    stored = bentoml.models.get("unit-stage-model:v8")
    assert stored.info.labels["stage"] == "production" and stored.info.creation_time == before
    assert entry.spec.sha256 == {"fp32": sha256_file(path)}  # the rest of the spec is kept
    set_stage("unit-stage-model", "v8", Stage.ARCHIVED)
    assert [e.spec.stage for e in list_versions("unit-stage-model")] == [Stage.ARCHIVED]


def test_reimporting_the_same_files_takes_the_codes_spec_but_keeps_the_released_stage(tmp_path: Path) -> None:
    import bentoml

    from services.models.spec import EmbeddingOutput
    from services.models.store import set_stage

    path = tmp_path / "m.onnx"
    path.write_bytes(b"refresh")
    spec = _spec("v9").model_copy(update={"name": "unit-refresh-model", "stage": Stage.SHADOW})
    import_model(spec, {"fp32": path})
    set_stage("unit-refresh-model", "v9", Stage.PRODUCTION)  # a release promoted it
    before = bentoml.models.get("unit-refresh-model:v9").info.creation_time
    changed = spec.model_copy(update={"embedding": EmbeddingOutput(query_expansion=7)})
    assert import_model(changed, {"fp32": path}) == "unit-refresh-model:v9"
    (entry,) = list_versions("unit-refresh-model")
    assert entry.spec.embedding == EmbeddingOutput(query_expansion=7)
    assert entry.spec.stage == Stage.PRODUCTION, "the release's stage, not the import's"
    assert bentoml.models.get("unit-refresh-model:v9").info.creation_time == before, "the entry is not re-created"
    assert entry.paths["fp32"].read_bytes() == b"refresh"


def test_set_stage_of_a_missing_entry_or_one_without_a_spec_fails(tmp_path: Path) -> None:
    import bentoml
    from bentoml.exceptions import NotFound

    from services.models.store import set_stage

    with pytest.raises(NotFound):
        set_stage("unit-stage-model", "no-such-version", Stage.PRODUCTION)
    with bentoml.models.create("unit-nospec-model:v1", labels={}, metadata={}):
        pass
    with pytest.raises(ValueError, match="no spec"):
        set_stage("unit-nospec-model", "v1", Stage.PRODUCTION)
