"""ModelPool: which versions load, which answers by default, and how failures fall back."""

from __future__ import annotations

import numpy as np
import pytest

from kernel.errors import InvalidParameter, ModelUnavailable, VersionNotFound
from services.config import Stage
from services.models.classification import Classifier, ClassifyParams
from services.models.detection import YoloxDetector
from services.models.embedding import Embedder
from services.models.registry import FAMILIES, ModelPool, UnknownFamily, family_for, is_client_error
from services.models.spec import LoadedFiles
from tests.unit.fakes import FakeFactory, FakeRunner, make_entry, sample

BOTH = {"int8": "model.int8.onnx", "fp32": "model.onnx"}
IMAGE = np.zeros((8, 8, 3), dtype=np.uint8)


def entry(name: str, version: str, stage: Stage = Stage.PRODUCTION, **kwargs: object) -> LoadedFiles:
    return make_entry(name=name, version=version, stage=stage, **kwargs)


def run(pool: ModelPool, version: str | None = None, n: int = 1) -> list[str]:
    """Infer ``n`` images; returns ``version/precision`` of each prediction."""
    predictions = pool.infer([IMAGE] * n, [ClassifyParams(top_k=1)] * n, version)
    return [f"{p.version}/{p.precision}" for p in predictions]


# --- the family registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "arch", "cls"),
    [
        ("classification", "efficientnet_lite0", Classifier),
        ("detection", "yolox", YoloxDetector),
        ("embedding", "efficientnet_lite0", Embedder),
    ],
)
def test_family_for_known_pairs(task: str, arch: str, cls: type) -> None:
    assert family_for(task, arch) is cls
    assert cls.task == task


def test_every_registered_family_declares_its_task() -> None:
    for (task, _), cls in FAMILIES.items():
        assert cls.task == task


def test_family_for_unknown_pair_names_known_ones() -> None:
    with pytest.raises(UnknownFamily, match="detection/yolox"):
        family_for("detection", "detr")


# --- choosing versions -----------------------------------------------------------------------


def test_default_version_is_best_stage() -> None:
    entries = [entry("p-stage", "v1", Stage.CANARY), entry("p-stage", "v2"), entry("p-stage", "v3", Stage.SHADOW)]
    pool = ModelPool("p-stage", entries, FakeFactory())
    assert pool.default_version == "v2"
    assert run(pool) == ["v2/fp32"]


def test_default_version_newest_wins_a_stage_tie() -> None:
    pool = ModelPool("p-tie", [entry("p-tie", "v1"), entry("p-tie", "v2")], FakeFactory())
    assert pool.default_version == "v2"


def test_pinned_default_wins_over_stage() -> None:
    entries = [entry("p-pin", "v1", Stage.CANARY), entry("p-pin", "v2")]
    pool = ModelPool("p-pin", entries, FakeFactory(), pinned_default="v1")
    assert pool.default_version == "v1"
    assert run(pool) == ["v1/fp32"]


def test_pinned_default_that_cannot_load_falls_back_to_stage() -> None:
    factory = FakeFactory({("v1", "fp32"): OSError("corrupt file")})
    pool = ModelPool(
        "p-pin-down", [entry("p-pin-down", "v1"), entry("p-pin-down", "v2", Stage.CANARY)], factory, pinned_default="v1"
    )
    assert pool.default_version == "v2"


def test_requested_version_not_loaded_raises_version_not_found() -> None:
    pool = ModelPool("p-404", [entry("p-404", "v1")], FakeFactory())
    with pytest.raises(VersionNotFound) as caught:
        run(pool, version="v9")
    assert caught.value.status_code == 404
    assert "v9" in caught.value.public_message


def test_requested_version_answers_alone() -> None:
    factory = FakeFactory({("v2", "fp32"): FakeRunner(error=RuntimeError("broken"))})
    pool = ModelPool("p-explicit", [entry("p-explicit", "v1"), entry("p-explicit", "v2")], factory)
    assert run(pool, version="v1") == ["v1/fp32"]
    with pytest.raises(ModelUnavailable):
        run(pool, version="v2")  # never answered by v1 when v2 was asked for


def test_archived_versions_are_skipped_unless_pinned() -> None:
    entries = [entry("p-arch", "v1", Stage.ARCHIVED), entry("p-arch", "v2")]
    assert set(ModelPool("p-arch", entries, FakeFactory()).versions) == {"v2"}
    pinned = ModelPool("p-arch", entries, FakeFactory(), pinned_default="v1")
    assert set(pinned.versions) == {"v1", "v2"}
    assert pinned.default_version == "v1"


def test_max_versions_keeps_newest() -> None:
    entries = [entry("p-max", f"v{i}") for i in range(1, 5)]
    factory = FakeFactory()
    pool = ModelPool("p-max", entries, factory, max_versions=2)
    assert list(pool.versions) == ["v4", "v3"]
    assert {version for version, _ in factory.loaded} == {"v4", "v3"}


def test_max_versions_always_holds_the_pin() -> None:
    entries = [entry("p-max-pin", f"v{i}") for i in range(1, 5)]
    pool = ModelPool("p-max-pin", entries, FakeFactory(), pinned_default="v1", max_versions=2)
    assert list(pool.versions) == ["v1", "v4"]


def test_candidates_default_first_then_by_stage_without_down_versions() -> None:
    entries = [
        entry("p-cand", "v1", Stage.SHADOW),
        entry("p-cand", "v2", Stage.CANARY),
        entry("p-cand", "v3"),
        entry("p-cand", "v4", Stage.CANARY, arch="unknown"),
    ]
    pool = ModelPool("p-cand", entries, FakeFactory(), max_versions=4)
    assert [v.spec.version for v in pool.candidates(None)] == ["v3", "v2", "v1"]


# --- precisions and fallback -----------------------------------------------------------------


def test_int8_preferred_when_both_precisions_load() -> None:
    pool = ModelPool("p-int8", [entry("p-int8", "v1", files=BOTH)], FakeFactory())
    assert run(pool) == ["v1/int8"]


def test_fp32_preferred_when_int8_not_wanted() -> None:
    pool = ModelPool("p-fp32", [entry("p-fp32", "v1", files=BOTH)], FakeFactory(), prefer_int8=False)
    assert run(pool) == ["v1/fp32"]


def test_int8_failure_falls_back_to_fp32_and_degrades() -> None:
    name = "p-int8-fail"
    factory = FakeFactory({("v1", "int8"): FakeRunner(error=RuntimeError("int8 kernel missing"))})
    pool = ModelPool(name, [entry(name, "v1", files=BOTH)], factory)
    fallback = {"model": name, "from_version": "v1/int8", "to_version": "v1/fp32"}
    errors = {"model": name, "version": "v1", "type": "RuntimeError"}
    before_fallbacks, before_errors = (
        sample("cv_model_fallbacks_total", fallback),
        sample("cv_inference_errors_total", errors),
    )

    assert run(pool, n=3) == ["v1/fp32"] * 3

    assert sample("cv_model_fallbacks_total", fallback) == before_fallbacks + 3
    assert sample("cv_inference_errors_total", errors) == before_errors + 1
    version = pool.versions["v1"]
    assert version.state == "degraded"
    assert version.errors["int8"].startswith("run failed: int8 kernel missing")
    assert pool.status()["status"] == "degraded"


def test_transient_run_failure_heals_on_next_success() -> None:
    name = "p-heal"
    flaky = FakeRunner(fail_when=lambda batch: len(flaky.batches) == 1)  # only the first call fails
    pool = ModelPool(name, [entry(name, "v1", files=BOTH)], FakeFactory({("v1", "int8"): flaky}))
    assert run(pool) == ["v1/fp32"]
    assert pool.versions["v1"].state == "degraded"
    assert run(pool) == ["v1/int8"]
    assert pool.versions["v1"].errors == {}
    assert pool.status()["status"] == "ok"


def test_default_version_failure_falls_back_to_another_version() -> None:
    name = "p-version-fallback"
    broken = FakeRunner(error=RuntimeError("cuda error"))
    factory = FakeFactory({("v2", "fp32"): broken})
    pool = ModelPool(name, [entry(name, "v1", Stage.CANARY), entry(name, "v2")], factory)
    labels = {"model": name, "from_version": "v2/fp32", "to_version": "v1/fp32"}
    before = sample("cv_model_fallbacks_total", labels)
    ok_before = sample("cv_inference_items_total", {"model": name, "version": "v1", "outcome": "ok"})

    assert run(pool, n=2) == ["v1/fp32", "v1/fp32"]

    assert len(broken.batches) == 1
    assert sample("cv_model_fallbacks_total", labels) == before + 2
    assert sample("cv_inference_items_total", {"model": name, "version": "v1", "outcome": "ok"}) == ok_before + 2


def test_success_on_first_choice_counts_no_fallback() -> None:
    name = "p-no-fallback"
    pool = ModelPool(name, [entry(name, "v1", files=BOTH)], FakeFactory())
    run(pool)
    labels = {"model": name, "from_version": "v1/int8", "to_version": "v1/int8"}
    assert sample("cv_model_fallbacks_total", labels) == 0.0
    assert pool.versions["v1"].state == "ok"


def test_all_runners_failing_raises_model_unavailable() -> None:
    name = "p-all-fail"
    factory = FakeFactory(
        {
            ("v1", "int8"): FakeRunner(error=RuntimeError("a")),
            ("v1", "fp32"): FakeRunner(error=RuntimeError("b")),
            ("v2", "fp32"): FakeRunner(error=ValueError("last one")),
        }
    )
    pool = ModelPool(name, [entry(name, "v1", files=BOTH), entry(name, "v2", Stage.CANARY)], factory)
    with pytest.raises(ModelUnavailable) as caught:
        run(pool)
    assert caught.value.status_code == 503
    assert caught.value.public_message.endswith("p-all-fail:v2 (fp32) failed: last one")
    assert sorted(key for key, runner in factory.runners.items() if runner.batches) == [  # type: ignore[union-attr]
        ("v1", "fp32"),
        ("v1", "int8"),
        ("v2", "fp32"),
    ]


def test_empty_pool_is_down_and_unavailable() -> None:
    pool = ModelPool("p-empty", [], FakeFactory())
    assert pool.default_version is None
    assert pool.status() == {"model": "p-empty", "status": "down", "default_version": None, "versions": []}
    with pytest.raises(ModelUnavailable, match="no version is loaded"):
        run(pool)


# --- load failures and status ----------------------------------------------------------------


def test_load_failure_of_one_precision_degrades() -> None:
    name = "p-load-int8"
    factory = FakeFactory({("v1", "int8"): OSError("bad int8 file")})
    pool = ModelPool(name, [entry(name, "v1", files=BOTH)], factory)
    version = pool.versions["v1"]
    assert set(version.models) == {"fp32"}
    assert version.state == "degraded"
    assert version.errors == {"int8": "load failed: bad int8 file"}
    assert sample("cv_model_version_loaded", {"model": name, "version": "v1", "precision": "int8"}) == 0.0
    assert sample("cv_model_version_loaded", {"model": name, "version": "v1", "precision": "fp32"}) == 1.0
    status = pool.status()
    assert status["status"] == "degraded"
    assert status["versions"][0]["precisions"] == {"int8": "failed", "fp32": "loaded"}
    assert run(pool) == ["v1/fp32"]
    assert pool.status()["status"] == "degraded"  # a load failure does not heal


def test_unknown_family_version_is_down() -> None:
    pool = ModelPool("p-unknown", [entry("p-unknown", "v1", arch="resnet9000")], FakeFactory())
    version = pool.versions["v1"]
    assert version.state == "down"
    assert "no model family" in version.errors["all"]
    assert pool.status()["status"] == "down"
    assert pool.default_version is None


def test_one_down_version_beside_a_good_one_degrades_the_pool() -> None:
    entries = [entry("p-mixed", "v1"), entry("p-mixed", "v2", Stage.CANARY, arch="resnet9000")]
    status = ModelPool("p-mixed", entries, FakeFactory()).status()
    assert status["status"] == "degraded"
    assert status["default_version"] == "v1"
    assert {v["version"]: v["state"] for v in status["versions"]} == {"v1": "ok", "v2": "down"}


def test_status_describes_every_version() -> None:
    name = "p-status"
    entries = [entry(name, "v1", Stage.CANARY, labels=["a", "b"]), entry(name, "v2")]
    status = ModelPool(name, entries, FakeFactory()).status()
    assert status["model"] == name
    assert status["status"] == "ok"
    assert status["default_version"] == "v2"
    described = {v["version"]: v for v in status["versions"]}
    assert described["v1"]["stage"] == "canary"
    assert described["v1"]["state"] == "ok"
    assert described["v1"]["precisions"] == {"fp32": "loaded"}
    assert described["v1"]["errors"] == {}
    metadata = described["v1"]["metadata"]
    assert metadata["num_labels"] == 2
    assert "labels" not in metadata
    assert metadata["version"] == "v1"


def test_is_client_error() -> None:
    assert is_client_error(InvalidParameter("bad"))
    assert is_client_error(VersionNotFound("gone"))
    assert not is_client_error(ModelUnavailable())
    assert not is_client_error(RuntimeError("boom"))


# --- warm-up ---------------------------------------------------------------------------------


def test_warm_up_runs_the_default_version_and_precision_once_and_records_nothing() -> None:
    name = "p-warm"
    factory = FakeFactory()
    pool = ModelPool(name, [entry(name, "v1", files=BOTH), entry(name, "v0", Stage.CANARY, files=BOTH)], factory)
    items = {"model": name, "version": "v1", "outcome": "ok"}
    before = sample("cv_inference_items_total", items)

    assert pool.warm_up() == f"{name}:v1 (int8)"

    int8, fp32 = factory.runners[("v1", "int8")], factory.runners[("v1", "fp32")]
    assert len(int8.batches) == 1 and fp32.batches == [] and factory.runners[("v0", "int8")].batches == []
    spec = pool.versions["v1"].spec.input
    assert int8.batches[0].shape == (1, 3, spec.height, spec.width)  # a resized image, one run
    assert sample("cv_inference_items_total", items) == before


def test_a_failed_warm_up_is_logged_and_never_stops_start_up(caplog: pytest.LogCaptureFixture) -> None:
    name = "p-warm-fail"
    factory = FakeFactory({("v1", "int8"): FakeRunner(error=RuntimeError("no kernel"))})
    pool = ModelPool(name, [entry(name, "v1", files=BOTH)], factory)

    assert pool.warm_up() is None
    assert "warm-up failed" in caplog.text
    assert pool.status()["status"] == "ok"  # a request decides, and falls back, as without the warm-up


def test_warm_up_of_an_empty_pool_does_nothing() -> None:
    assert ModelPool("p-warm-empty", [], FakeFactory()).warm_up() is None
