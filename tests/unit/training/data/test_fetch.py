"""fetch.py against a local HTTP server and archives built here: progress, sums, .part files, unsafe members."""

from __future__ import annotations

import io
import socket
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.unit.training.data.conftest import sha256
from training.data import fetch as fetch_module
from training.data.fetch import (
    ChecksumError,
    DownloadError,
    Fetched,
    LineProgress,
    NetworkError,
    Remote,
    UnsafeArchiveError,
    extract,
    fetch,
    fetch_kaggle,
    progress_bar,
    read_sha256sums,
    sha256_file,
    unpack_mirror,
    verify,
)

PAYLOAD = bytes(range(256)) * 4096 * 3  # 3 MiB: several chunks


@pytest.fixture
def served(http_server: tuple[str, Path, list[str]]) -> tuple[str, Path, list[str]]:
    base, www, requests = http_server
    (www / "data.bin").write_bytes(PAYLOAD)
    return base, www, requests


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fetch_checks_the_sum_and_shows_progress(served: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base, _, _ = served
    got = fetch(Remote(f"{base}/data.bin", "data.bin", _digest(PAYLOAD)), tmp_path / "dl")
    assert got == Fetched(f"{base}/data.bin", tmp_path / "dl" / "data.bin", len(PAYLOAD), _digest(PAYLOAD), True)
    assert got.path.read_bytes() == PAYLOAD
    assert not (tmp_path / "dl" / "data.bin.part").exists()
    err = capsys.readouterr().err
    assert "data.bin" in err and "3.00M" in err  # tqdm's byte bar


def test_fetch_without_a_known_sum_records_what_it_got(served: tuple, tmp_path: Path) -> None:
    base, _, _ = served
    got = fetch(Remote(f"{base}/data.bin", "data.bin"), tmp_path, progress=False)
    assert (got.size, got.sha256, got.verified) == (len(PAYLOAD), _digest(PAYLOAD), False)
    assert got.record() == {"source": f"{base}/data.bin", "file": "data.bin", "size": len(PAYLOAD),
                            "sha256": _digest(PAYLOAD), "verified": False}  # fmt: skip


def test_fetch_falls_back_to_a_progress_line_without_tqdm(
    served: tuple, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` now raises ImportError
    base, _, _ = served
    fetch(Remote(f"{base}/data.bin", "data.bin"), tmp_path)
    err = capsys.readouterr().err
    assert "\rdata.bin: 3.1/3.1 MB (100%)" in err
    assert err.endswith("\n")


def test_checksum_mismatch_removes_the_part_file(served: tuple, tmp_path: Path) -> None:
    base, _, _ = served
    with pytest.raises(ChecksumError, match=r"expected 0+; the partial file was removed"):
        fetch(Remote(f"{base}/data.bin", "data.bin", "0" * 64), tmp_path / "dl", progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_a_complete_earlier_download_is_reused(served: tuple, tmp_path: Path) -> None:
    base, _, requests = served
    remote = Remote(f"{base}/data.bin", "data.bin", _digest(PAYLOAD))
    fetch(remote, tmp_path, progress=False)
    again = fetch(remote, tmp_path, progress=False)
    assert again.verified and again.size == len(PAYLOAD)
    assert requests == ["/data.bin"]


def test_an_earlier_download_with_the_wrong_sum_is_fetched_again(served: tuple, tmp_path: Path) -> None:
    base, _, requests = served
    (tmp_path / "data.bin").write_bytes(b"stale")
    got = fetch(Remote(f"{base}/data.bin", "data.bin", _digest(PAYLOAD)), tmp_path, progress=False)
    assert got.path.read_bytes() == PAYLOAD
    assert requests == ["/data.bin"]


def test_http_error_is_a_network_error(served: tuple, tmp_path: Path) -> None:
    base, _, _ = served
    with pytest.raises(NetworkError, match="HTTP 404"):
        fetch(Remote(f"{base}/missing.zip", "missing.zip"), tmp_path / "dl", progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_no_network_says_to_use_the_mirror(tmp_path: Path) -> None:
    remote = Remote(f"http://127.0.0.1:{_closed_port()}/x.zip", "x.zip")
    with pytest.raises(NetworkError, match="--from-mirror DIR"):
        fetch(remote, tmp_path, progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_transfer_is_an_error_and_leaves_no_part(served: tuple, tmp_path: Path) -> None:
    base, _, _ = served
    with pytest.raises(NetworkError):
        fetch(Remote(f"{base}/truncated", "t.bin"), tmp_path / "dl", progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_an_interrupted_fetch_leaves_no_part(served: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _, _ = served

    def interrupted(*args: object, **kwargs: object) -> tuple[int, str]:
        (tmp_path / "dl" / "data.bin.part").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_module, "_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(Remote(f"{base}/data.bin", "data.bin"), tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_line_progress_without_a_total_counts_megabytes() -> None:
    stream = io.StringIO()
    bar = LineProgress(None, "x", stream)
    for _ in range(25):
        bar.update(1 << 20)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 4  # at 0, 10 and 20 MiB, and the last line
    assert text.endswith("\rx: 26.2 MB\n")


def test_disabled_progress_is_silent(capsys: pytest.CaptureFixture) -> None:
    bar = progress_bar(10, "x", enabled=False)
    bar.update(10)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_read_sha256sums_accepts_text_and_binary_markers(tmp_path: Path) -> None:
    listing = tmp_path / "SHA256SUMS"
    listing.write_text(f"{'A' * 64}  a.tar.gz\n\n{'b' * 64} *b.txt\n")
    assert read_sha256sums(listing) == {"a.tar.gz": "a" * 64, "b.txt": "b" * 64}


@pytest.mark.parametrize(
    "line", ["nonsense", f"{'a' * 63}  short.txt", f"{'a' * 64}  ../up.txt", f"{'a' * 64}  d/f.txt"]
)
def test_read_sha256sums_rejects_bad_lines(tmp_path: Path, line: str) -> None:
    (tmp_path / "SHA256SUMS").write_text(line + "\n")
    with pytest.raises(ChecksumError, match="line 1"):
        read_sha256sums(tmp_path / "SHA256SUMS")


def test_verify(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert verify(tmp_path / "f", _digest(b"abc")).verified
    with pytest.raises(ChecksumError, match="the mirror is damaged"):
        verify(tmp_path / "f", "0" * 64)
    with pytest.raises(ChecksumError, match="missing"):
        verify(tmp_path / "g", "0" * 64)


def _tar_with(archive: Path, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, 0 if link else len(data)
        tar.addfile(info, None if link else io.BytesIO(data))
    return archive


def test_extract_tar_and_zip(tmp_path: Path) -> None:
    _tar_with(tmp_path / "a.tar.gz", "top/file.txt", b"tar")
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("top/other.txt", "zip")
    extract(tmp_path / "a.tar.gz", tmp_path / "out")
    extract(tmp_path / "b.zip", tmp_path / "out")
    assert (tmp_path / "out" / "top" / "file.txt").read_text() == "tar"
    assert (tmp_path / "out" / "top" / "other.txt").read_text() == "zip"


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [("../evil.txt", tarfile.REGTYPE, ""), ("ln", tarfile.SYMTYPE, "/etc/passwd"), ("ln", tarfile.LNKTYPE, "../x")],
)
def test_extract_refuses_tar_members_outside_the_destination(tmp_path: Path, name: str, kind: bytes, link: str) -> None:
    archive = _tar_with(tmp_path / "evil.tar.gz", name, kind=kind, link=link)
    with pytest.raises(UnsafeArchiveError, match=r"evil\.tar\.gz"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_extract_makes_absolute_tar_members_relative(tmp_path: Path) -> None:
    extract(_tar_with(tmp_path / "abs.tar.gz", "/abs.txt"), tmp_path / "out")  # tarfile's "data" filter
    assert (tmp_path / "out" / "abs.txt").read_text() == "x"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt", "ok/../../evil.txt"])
def test_extract_refuses_zip_members_outside_the_destination(tmp_path: Path, name: str) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr(name, "evil")
    with pytest.raises(UnsafeArchiveError, match="would be written outside"):
        extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # checked before anything is written


@pytest.mark.parametrize("name", ["notes.tar.gz", "notes.zip"])
def test_extract_of_something_else_is_a_clear_error(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("not an archive")
    with pytest.raises(DownloadError, match="not a readable tar or zip"):
        extract(tmp_path / name, tmp_path / "out")


def test_unpack_mirror_checks_sums_then_extracts_and_copies(tiny_mirror: Path, tmp_path: Path) -> None:
    checked = unpack_mirror(tiny_mirror / "tiny-imagenet-200", tmp_path / "out")
    assert sorted(item.path.name for item in checked) == ["train-000.tar.gz", "val.tar.gz", "wnids.txt", "words.txt"]
    assert all(item.verified and item.sha256 == sha256(item.path) for item in checked)
    out = tmp_path / "out"
    assert (out / "wnids.txt").is_file() and (out / "val" / "val_annotations.txt").is_file()
    assert len(list(out.glob("train/*/images/*.JPEG"))) == 12


def test_unpack_mirror_refuses_a_damaged_mirror_before_unpacking(tiny_mirror: Path, tmp_path: Path) -> None:
    (tiny_mirror / "tiny-imagenet-200" / "words.txt").write_text("changed\n")
    with pytest.raises(ChecksumError, match=r"words\.txt has sha256"):
        unpack_mirror(tiny_mirror / "tiny-imagenet-200", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_mirror_needs_a_sums_file(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="has no SHA256SUMS"):
        unpack_mirror(tmp_path, tmp_path / "out")


def _fake_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """A `kaggle` executable: ``kaggle datasets download -d SLUG -p DIR`` runs ``body``."""
    exe = tmp_path / "bin" / "kaggle"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nset -eu\n[ "$1 $2 $3 $5" = "datasets download -d -p" ] || exit 9\n{body}\n')
    exe.chmod(0o755)
    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: str(exe) if name == "kaggle" else None)


def test_fetch_kaggle_runs_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(tmp_path, monkeypatch, 'printf zipbytes > "$6/tiny-imagenet.zip"')
    got = fetch_kaggle("someone/tiny-imagenet", tmp_path / "dl")
    assert got == Fetched("kaggle:someone/tiny-imagenet", tmp_path / "dl" / "tiny-imagenet.zip", 8,
                          sha256_file(tmp_path / "dl" / "tiny-imagenet.zip"), False)  # fmt: skip


def test_fetch_kaggle_reports_a_failing_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kaggle(tmp_path, monkeypatch, "echo 401 Unauthorized >&2; exit 1")
    with pytest.raises(DownloadError, match=r"failed \(exit 1, tiny-imagenet.zip missing\).*credentials"):
        fetch_kaggle("someone/tiny-imagenet", tmp_path / "dl")


def test_fetch_kaggle_without_the_cli_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_module.shutil, "which", lambda name: None)
    with pytest.raises(DownloadError, match="pip install kaggle"):
        fetch_kaggle("someone/tiny-imagenet", tmp_path)


@pytest.mark.parametrize("slug", ["tiny-imagenet", "a/b/c", "a/b; rm -rf /"])
def test_fetch_kaggle_rejects_malformed_names(tmp_path: Path, slug: str) -> None:
    with pytest.raises(DownloadError, match="OWNER/DATASET"):
        fetch_kaggle(slug, tmp_path)
