"""Get files to disk safely: HTTP downloads through a ``.part`` file, SHA-256 checks, archive
extraction that refuses members escaping the destination, a mirror folder's ``SHA256SUMS``,
and the ``kaggle`` CLI.

Used by :mod:`training.data.download`, which knows the data sets themselves.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from kernel.paths import sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class DownloadError(RuntimeError):
    """A data set could not be fetched or unpacked; the message says what to do."""


class NetworkError(DownloadError):
    """The source could not be reached, or the transfer stopped."""


class ChecksumError(DownloadError):
    """A file's SHA-256 is not the expected one."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the destination (absolute path, ``..``, link)."""


class LayoutError(DownloadError):
    """What was unpacked is not the data set's original layout."""


@dataclass(frozen=True)
class Remote:
    """A file at a URL, with its SHA-256 where the source publishes one."""

    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class Fetched:
    """A file as obtained: where from, where it is, and what it turned out to be."""

    source: str
    path: Path
    size: int
    sha256: str
    verified: bool  # the SHA-256 matched a published or mirrored sum

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "file": self.path.name,
            "size": self.size,
            "sha256": self.sha256,
            "verified": self.verified,
        }


# --- progress -------------------------------------------------------------------------------------


class Progress(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


class LineProgress:
    """A one-line byte counter for when tqdm is not installed; redrawn at each whole percent."""

    def __init__(self, total: int | None, desc: str, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.stream = stream if stream is not None else sys.stderr
        self._shown = -1

    def update(self, n: int) -> None:
        self.done += n
        step = self.done * 100 // self.total if self.total else self.done // (10 * CHUNK)
        if step != self._shown:
            self._shown = step
            self._draw()

    def _draw(self) -> None:
        size = f"{self.done / 1e6:.1f}"
        if self.total:
            size += f"/{self.total / 1e6:.1f} MB ({self.done * 100 // self.total}%)"
        else:
            size += " MB"
        self.stream.write(f"\r{self.desc}: {size}")
        self.stream.flush()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str, *, enabled: bool = True) -> Progress:
    """A tqdm byte bar when tqdm is installed, else a :class:`LineProgress` on stderr."""
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return LineProgress(total, desc)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


# --- files ----------------------------------------------------------------------------------------


def read_sha256sums(path: Path) -> dict[str, str]:
    """File name -> SHA-256 from a ``sha256sum`` listing; only plain names next to the listing."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        name = match.group(2) if match else ""
        if not match or Path(name).name != name or name in {".", ".."}:
            raise ChecksumError(f"{path} line {number}: not '<sha256>  <file name>': {line!r}")
        sums[name] = match.group(1).lower()
    return sums


def fetch(remote: Remote, folder: Path, *, progress: bool = True, timeout: float = 60.0) -> Fetched:
    """Download ``remote`` into ``folder`` through a ``.part`` file; a complete earlier copy is reused.

    Raises:
        NetworkError: the URL cannot be reached, answers with an HTTP error, or stops early.
        ChecksumError: ``remote.sha256`` is set and the received bytes do not match it
            (the ``.part`` file is removed).
    """
    dest = Path(folder) / remote.filename
    if dest.is_file():
        digest = sha256_file(dest)
        if remote.sha256 is None or digest == remote.sha256.lower():
            log.info("using %s, downloaded before", dest)
            return Fetched(remote.url, dest, dest.stat().st_size, digest, remote.sha256 is not None)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        size, digest = _stream(remote.url, part, progress=progress, timeout=timeout)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if remote.sha256 is not None and digest != remote.sha256.lower():
        part.unlink()
        raise ChecksumError(
            f"{remote.url}: got sha256 {digest}, expected {remote.sha256}; the partial file was removed, try again"
        )
    part.replace(dest)
    return Fetched(remote.url, dest, size, digest, remote.sha256 is not None)


def _stream(url: str, part: Path, *, progress: bool, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "cv-api-download/1"})
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = progress_bar(total, part.name.removesuffix(".part"), enabled=progress)
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
    except urllib.error.HTTPError as error:
        raise NetworkError(f"{url} answered HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise NetworkError(
            f"could not download {url} ({reason}). Without internet access, unpack from a mirror "
            "folder instead: --from-mirror DIR (for example ../shared/datasets)"
        ) from error
    if total is not None and size != total:
        raise NetworkError(f"{url}: the transfer stopped after {size} of {total} bytes; try again")
    return size, digest.hexdigest()


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``, refusing members that escape it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix.lower() == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _inside(dest, info.filename, archive)
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(dest, filter="data")  # refuses absolute links, `..`, devices; strips a leading /
    except tarfile.FilterError as error:
        raise UnsafeArchiveError(f"{archive.name}: refused {error}") from error
    except (tarfile.TarError, zipfile.BadZipFile) as error:
        raise DownloadError(f"{archive} is not a readable tar or zip archive: {error}") from error


def _inside(dest: Path, name: str, archive: Path) -> Path:
    target = (dest / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} would be written outside {dest}")
    return target


def verify(path: Path, expected: str) -> Fetched:
    """A mirror file checked against its listed SHA-256.

    Raises:
        ChecksumError: the file is missing or its SHA-256 differs.
    """
    if not path.is_file():
        raise ChecksumError(f"{path} is listed in SHA256SUMS but missing; the mirror is incomplete")
    digest = sha256_file(path)
    if digest != expected:
        raise ChecksumError(f"{path} has sha256 {digest}, SHA256SUMS says {expected}; the mirror is damaged")
    return Fetched(str(path), path, path.stat().st_size, digest, True)


def unpack_mirror(folder: Path, dest: Path) -> list[Fetched]:
    """What the mirror's ``unpack.sh`` does, in Python: check every sum, then extract the archives
    listed in ``SHA256SUMS`` into ``dest`` and copy the other listed files beside them."""
    listing = Path(folder) / "SHA256SUMS"
    if not listing.is_file():
        raise DownloadError(f"{folder} is not a data set mirror folder: it has no SHA256SUMS")
    checked = [verify(listing.parent / name, digest) for name, digest in read_sha256sums(listing).items()]
    dest.mkdir(parents=True, exist_ok=True)
    for item in checked:
        log.info("unpacking %s", item.path)
        if item.path.name.endswith(ARCHIVE_SUFFIXES):
            extract(item.path, dest)
        else:
            shutil.copyfile(item.path, dest / item.path.name)  # not copy2: the mirror's files are read-only
    return checked


def fetch_kaggle(slug: str, folder: Path) -> Fetched:
    """Download a Kaggle data set's zip with the ``kaggle`` CLI, which reads its own credentials.

    Raises:
        DownloadError: a malformed slug, no ``kaggle`` CLI, or the CLI failed.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", slug):
        raise DownloadError(f"--kaggle takes OWNER/DATASET as on kaggle.com/datasets/OWNER/DATASET, got {slug!r}")
    exe = shutil.which("kaggle")
    if exe is None:
        raise DownloadError(
            "the kaggle CLI is not installed: `pip install kaggle`, then save an API token as ~/.kaggle/kaggle.json "
            "(kaggle.com > Settings > API). Or leave out --kaggle to use the Stanford zip."
        )
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([exe, "datasets", "download", "-d", slug, "-p", str(folder)], check=False)
    path = folder / f"{slug.split('/')[1]}.zip"
    if done.returncode != 0 or not path.is_file():
        raise DownloadError(
            f"`kaggle datasets download -d {slug}` failed (exit {done.returncode}, {path.name} "
            f"{'present' if path.is_file() else 'missing'}); check the name and your Kaggle credentials"
        )
    return Fetched(f"kaggle:{slug}", path, path.stat().st_size, sha256_file(path), False)
