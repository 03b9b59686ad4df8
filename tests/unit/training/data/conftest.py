"""Fixtures for the data tests: a Tiny-ImageNet tree in the original layout, archives, a mirror, an HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Unsorted on purpose: class indices must follow the sorted wnids.
WNIDS = ["n03000003", "n01000001", "n02000002"]
WORDS = {"n01000001": "goldfish, Carassius auratus", "n02000002": "tabby, tabby cat", "n03000003": "lemon"}
TRAIN_NUMBERS = [0, 1, 2, 10]  # sorted byte-wise: _0, _1, _10, _2
# (file, wnid) in val_annotations.txt order, deliberately not grouped by class.
VAL = [("val_0.JPEG", "n02000002"), ("val_1.JPEG", "n01000001"), ("val_2.JPEG", "n03000003"),
       ("val_3.JPEG", "n01000001"), ("val_4.JPEG", "n02000002")]  # fmt: skip


def write_jpeg(path: Path, seed: int, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def build_tiny_imagenet(root: Path) -> Path:
    """A three-class Tiny-ImageNet in the original layout under ``root`` (the ``tiny-imagenet-200`` folder)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    unrelated = "n00001740\tentity\nn00002137\tabstraction, abstract entity\nn99999999\tnot in wnids\n"
    (root / "words.txt").write_text(unrelated + "".join(f"{w}\t{WORDS[w]}\n" for w in WNIDS))
    seed = 0
    for wnid in WNIDS:
        for n in TRAIN_NUMBERS:
            seed += 1
            write_jpeg(root / "train" / wnid / "images" / f"{wnid}_{n}.JPEG", seed)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    for number, (name, _) in enumerate(VAL):
        write_jpeg(root / "val" / "images" / name, 100 + number)
    lines = [f"{name}\t{wnid}\t0\t0\t63\t63" for name, wnid in VAL]
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n\n")
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return build_tiny_imagenet(tmp_path / "datasets" / "tiny-imagenet-200")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tar(archive: Path, root: Path, members: list[str]) -> Path:
    """A tar.gz of ``members`` (paths relative to ``root``), stored under those relative paths."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for member in members:
            tar.add(root / member, arcname=member)
    return archive


def make_zip(archive: Path, root: Path, prefix: str = "") -> Path:
    """A zip of everything under ``root``, each name prefixed with ``prefix``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, prefix + path.relative_to(root).as_posix())
    return archive


def build_tiny_mirror(mirror: Path, tree: Path) -> Path:
    """``mirror/tiny-imagenet-200`` as the shared mirror ships it: archives, loose files, SHA256SUMS."""
    folder = mirror / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    make_tar(folder / "train-000.tar.gz", tree, ["train"])
    make_tar(folder / "val.tar.gz", tree, ["val"])
    for name in ("wnids.txt", "words.txt"):
        (folder / name).write_bytes((tree / name).read_bytes())
    files = ["train-000.tar.gz", "val.tar.gz", "wnids.txt", "words.txt"]
    (folder / "SHA256SUMS").write_text("".join(f"{sha256(folder / f)}  {f}\n" for f in files))
    return folder


@pytest.fixture
def tiny_mirror(tmp_path: Path) -> Path:
    """A fake mirror folder (the parent of ``tiny-imagenet-200/``)."""
    tree = build_tiny_imagenet(tmp_path / "source" / "tiny-imagenet-200")
    build_tiny_mirror(tmp_path / "mirror", tree)
    return tmp_path / "mirror"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a few bytes")
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A local HTTP server on 127.0.0.1: (base URL, the folder it serves, the paths requested)."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(www)))
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www, server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
