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
