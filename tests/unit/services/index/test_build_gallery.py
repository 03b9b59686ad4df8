"""The gallery builder: image sources, incremental builds, the command line."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.config import ServingSettings, get_settings
from services.index import build_gallery
from services.index.build_gallery import build, folder_images, main, tiny_imagenet_val
from services.index.gallery import GalleryIndex
from services.index.search import SearchEngine
from services.models.registry import ModelPool
from services.models.worker import ModelWorker
from tests.unit.fakes import FakeFactory, FakeRunner, image_bytes, make_entry

DIM = 3
WORDS = "n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander, Salamandra salamandra\n"
# Deliberately not in numeric order: the reader sorts val_2 before val_10.
ANNOTATIONS = "val_10.JPEG\tn01629819\t0\t0\t8\t8\nval_2.JPEG\tn01443537\t0\t0\t8\t8\n"


def png(value: int) -> bytes:
    """A solid 8 x 8 PNG whose red channel is ``value``."""
    return image_bytes(Image.new("RGB", (8, 8), (value, 0, 0)), "PNG")


def embed_by_red_value(batch: np.ndarray) -> np.ndarray:
    """Red value v -> unit vector on axis v % 3; 255 is an input the model fails on."""
    values = batch[:, 0, 0, 0].astype(int)
    if (values == 255).any():
        raise RuntimeError("poison input")
    return np.eye(DIM, dtype=np.float32)[values % DIM]


def fake_pool(runner: FakeRunner | None = None) -> ModelPool:
    entry = make_entry(name="embedder", version="v1", task="embedding")
    return ModelPool("embedder", [entry], FakeFactory({("v1", "fp32"): runner or FakeRunner(fn=embed_by_red_value)}))


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def settings() -> ServingSettings:
    return ServingSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner(fn=embed_by_red_value)


@pytest.fixture
def engine(tmp_path: Path, runner: FakeRunner) -> Iterator[SearchEngine]:
    index = GalleryIndex(tmp_path / "gallery.sqlite3", DIM)
    yield SearchEngine(ModelWorker(fake_pool(runner)), index)
    index.close()


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """An unpacked Tiny-ImageNet layout with two val images."""
    root = tmp_path / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "words.txt").write_text(WORDS)
    (root / "val" / "val_annotations.txt").write_text(ANNOTATIONS)
    (root / "val" / "images" / "val_2.JPEG").write_bytes(png(2))
    (root / "val" / "images" / "val_10.JPEG").write_bytes(png(10))
    return root


# --- sources ---------------------------------------------------------------------------------


def test_folder_images_recursive_sorted_image_suffixes_only(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.png").write_bytes(png(1))
    (tmp_path / "a.JPG").write_bytes(b"jpeg bytes")
    (tmp_path / "sub" / "c.webp").write_bytes(b"webp bytes")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "archive.tar.gz").write_bytes(b"")
    records = list(folder_images(tmp_path))
    assert [meta for _, meta in records] == [{"filename": "a.JPG"}, {"filename": "b.png"}, {"filename": "sub/c.webp"}]
    assert records[1][0] == png(1)


def test_tiny_imagenet_val_unpacked(tiny_root: Path) -> None:
    records = list(tiny_imagenet_val(tiny_root))
    assert [meta for _, meta in records] == [
        {"filename": "val_2.JPEG", "wnid": "n01443537", "label": "goldfish"},
        {"filename": "val_10.JPEG", "wnid": "n01629819", "label": "European fire salamander"},
    ]
    assert [data for data, _ in records] == [png(2), png(10)]


def test_tiny_imagenet_val_without_words_uses_wnid(tiny_root: Path) -> None:
    (tiny_root / "words.txt").unlink()
    assert [meta["label"] for _, meta in tiny_imagenet_val(tiny_root)] == ["n01443537", "n01629819"]


@pytest.mark.parametrize("prefix", ["", "./"], ids=["plain", "dot-slash"])
def test_tiny_imagenet_val_from_tarball(tmp_path: Path, prefix: str) -> None:
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "words.txt").write_text(WORDS)
    files = {
        "val/val_annotations.txt": ANNOTATIONS.encode(),
        "val/images/val_2.JPEG": png(2),
        "val/images/val_10.JPEG": png(10),
    }
    with tarfile.open(root / "val.tar.gz", "w:gz") as archive:
        folder = tarfile.TarInfo(prefix + "val")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    records = list(tiny_imagenet_val(root))
    assert [meta["filename"] for _, meta in records] == ["val_2.JPEG", "val_10.JPEG"]
    assert [meta["label"] for _, meta in records] == ["goldfish", "European fire salamander"]
    assert records[1][0] == png(10)


# --- build -----------------------------------------------------------------------------------


def test_build_embeds_and_stores_with_metadata(engine: SearchEngine, settings: ServingSettings) -> None:
    records = [(png(0), {"filename": "zero.png"}), (png(1), {"filename": "one.png"})]
    assert build(iter(records), engine, settings, limit=0) == 2
    sha = hashlib.sha256(png(1)).hexdigest()
    assert engine.index.contains(sha[:32])
    (hits,) = engine.index.search(np.asarray([[0, 1, 0]], dtype=np.float32), 1)
    assert hits[0].id == sha[:32]
    assert hits[0].metadata == {"filename": "one.png", "sha256": sha}


def test_build_skips_undecodable_files(engine: SearchEngine, settings: ServingSettings) -> None:
    records = [
        (b"not an image", {"filename": "notes.png"}),
        (png(0), {"filename": "ok.png"}),
        (png(1)[:40], {"filename": "truncated.png"}),
    ]
    handler = ListHandler()
    logger = logging.getLogger("services.index.build_gallery")
    logger.addHandler(handler)  # not caplog: another test may have turned propagation off
    try:
        assert build(iter(records), engine, settings, limit=0) == 1
    finally:
        logger.removeHandler(handler)
    assert engine.size() == 1
    # Only the warnings: whether the INFO lines ("indexed") reach the handler depends on the level another test set.
    skipped = [r for r in handler.records if r.levelno >= logging.WARNING]
    assert [(r.getMessage(), r.file) for r in skipped] == [  # type: ignore[attr-defined]
        ("skipped", "notes.png"),
        ("skipped", "truncated.png"),
    ]


def test_build_skips_images_already_indexed(
    engine: SearchEngine, settings: ServingSettings, runner: FakeRunner
) -> None:
    first = [(png(0), {"filename": "a.png"}), (png(1), {"filename": "b.png"})]
    assert build(iter(first), engine, settings, limit=0) == 2
    calls = len(runner.batches)
    again = [*first, (png(2), {"filename": "c.png"})]
    assert build(iter(again), engine, settings, limit=0) == 1
    assert engine.size() == 3
    assert [len(b) for b in runner.batches[calls:]] == [1]  # only the new image was embedded


def test_build_respects_limit(engine: SearchEngine, settings: ServingSettings) -> None:
    records = [(png(v), {"filename": f"{v}.png"}) for v in range(5)]
    assert build(iter(records), engine, settings, limit=2) == 2
    assert engine.size() == 2


def test_build_flushes_in_batches(engine: SearchEngine, settings: ServingSettings, runner: FakeRunner) -> None:
    records = [(png(v), {"filename": f"{v}.png"}) for v in range(5)]
    assert build(iter(records), engine, settings, limit=0, batch=2) == 5
    assert [len(b) for b in runner.batches] == [2, 2, 1]


def test_build_leaves_out_images_the_model_fails_on(engine: SearchEngine, settings: ServingSettings) -> None:
    records = [(png(0), {"filename": "a.png"}), (png(255), {"filename": "poison.png"}), (png(1), {"filename": "b.png"})]
    assert build(iter(records), engine, settings, limit=0) == 2
    assert not engine.index.contains(hashlib.sha256(png(255)).hexdigest()[:32])


def test_build_same_image_twice_in_one_run_indexes_it_once(engine: SearchEngine, settings: ServingSettings) -> None:
    records = [(png(0), {"filename": "a.png"}), (png(0), {"filename": "copy-of-a.png"})]
    assert build(iter(records), engine, settings, limit=0) == 1


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_services_logger: logging.Logger
) -> Iterator[list[str]]:
    """CV_DATA_DIR and the data-set mirror in tmp_path; build_pool answers with fake runners."""
    built: list[str] = []

    def fake_build_pool(name: str, settings: ServingSettings) -> ModelPool:
        built.append(name)
        return fake_pool()

    monkeypatch.setenv("CV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CV_DATASETS_MIRROR_DIR", str(tmp_path / "datasets"))
    monkeypatch.setenv("CV_GALLERY_DIM", str(DIM))
    monkeypatch.setattr(build_gallery, "build_pool", fake_build_pool)
    get_settings.cache_clear()
    yield built
    get_settings.cache_clear()


def gallery_size(tmp_path: Path) -> int:
    index = GalleryIndex(tmp_path / "data" / "gallery.sqlite3", DIM)
    try:
        return len(index)
    finally:
        index.close()


def photo_folder(tmp_path: Path, count: int) -> Path:
    """``tmp_path/photos`` with ``count`` PNGs named 0.png, 1.png, ..."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for v in range(count):
        (folder / f"{v}.png").write_bytes(png(v))
    return folder


def test_main_indexes_a_folder(tmp_path: Path, cli_env: list[str]) -> None:
    folder = photo_folder(tmp_path, 3)
    assert main(["--folder", str(folder)]) == 0
    assert cli_env == ["embedder"]
    assert gallery_size(tmp_path) == 3


def test_main_folder_with_limit(tmp_path: Path, cli_env: list[str]) -> None:
    folder = photo_folder(tmp_path, 3)
    assert main(["--folder", str(folder), "--limit", "1"]) == 0
    assert gallery_size(tmp_path) == 1


def test_main_if_empty_does_nothing_when_populated(tmp_path: Path, cli_env: list[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(0))
    assert main(["--folder", str(folder)]) == 0
    (folder / "b.png").write_bytes(png(1))
    assert main(["--folder", str(folder), "--if-empty"]) == 0
    assert cli_env == ["embedder"]  # the second run never loaded the model
    assert gallery_size(tmp_path) == 1


def test_main_if_stale_keeps_a_gallery_of_this_embedder_and_rebuilds_one_of_another(
    tmp_path: Path, cli_env: list[str]
) -> None:
    folder = photo_folder(tmp_path, 2)
    assert main(["--folder", str(folder), "--if-stale"]) == 0  # empty: built
    assert gallery_size(tmp_path) == 2
    (folder / "2.png").write_bytes(png(2))
    assert main(["--folder", str(folder), "--if-stale"]) == 0  # built by the same embedder:v1: left alone
    assert gallery_size(tmp_path) == 2

    index = GalleryIndex(tmp_path / "data" / "gallery.sqlite3", DIM)
    index.clear()
    index.add(np.eye(DIM, dtype=np.float32)[:1], [{"filename": "old.png"}], ids=["old"], embedder="embedder:v0")
    index.close()
    assert main(["--folder", str(folder), "--if-stale"]) == 0  # another version's vectors: emptied, built again
    index = GalleryIndex(tmp_path / "data" / "gallery.sqlite3", DIM)
    try:
        assert (len(index), index.embedder, index.contains("old")) == (3, "embedder:v1", False)
    finally:
        index.close()


def test_main_tiny_imagenet_without_mirror_leaves_gallery_empty(tmp_path: Path, cli_env: list[str]) -> None:
    assert main(["--tiny-imagenet-val"]) == 0
    assert cli_env == []
    assert gallery_size(tmp_path) == 0


def test_main_tiny_imagenet_from_mirror(tmp_path: Path, cli_env: list[str]) -> None:
    root = tmp_path / "datasets" / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "words.txt").write_text(WORDS)
    (root / "val" / "val_annotations.txt").write_text(ANNOTATIONS)
    (root / "val" / "images" / "val_2.JPEG").write_bytes(png(2))
    (root / "val" / "images" / "val_10.JPEG").write_bytes(png(10))
    assert main(["--tiny-imagenet-val"]) == 0
    index = GalleryIndex(tmp_path / "data" / "gallery.sqlite3", DIM)
    (hits,) = index.search(np.asarray([[0, 0, 1]], dtype=np.float32), 1)  # red 2 -> axis 2
    assert hits[0].metadata["label"] == "goldfish"
    assert len(index) == 2
    index.close()


def test_main_requires_a_source(cli_env: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


def test_main_stamps_the_gallery_and_rebuild_starts_over(tmp_path: Path, cli_env: list[str]) -> None:
    folder = photo_folder(tmp_path, 2)
    assert main(["--folder", str(folder)]) == 0
    index = GalleryIndex(tmp_path / "data" / "gallery.sqlite3", DIM)
    stamp = index.embedder
    assert stamp is not None and stamp.startswith("embedder:")
    index.add(np.zeros((1, DIM), dtype=np.float32), [{}], ids=["stray"])  # an unstamped extra
    index.close()
    (folder / "1.png").unlink()
    assert main(["--folder", str(folder), "--rebuild"]) == 0
    assert gallery_size(tmp_path) == 1  # the stray and the deleted photo are gone


def test_thumbnail_is_a_small_jpeg_data_uri_keeping_the_aspect() -> None:
    import base64
    import io

    from PIL import Image

    from services.index.build_gallery import THUMBNAIL_PX, thumbnail

    uri = thumbnail(np.full((300, 600, 3), 128, dtype=np.uint8))
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "JPEG" and image.size == (THUMBNAIL_PX, THUMBNAIL_PX // 2)
