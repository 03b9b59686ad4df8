"""Submit a folder of images as one batch job, follow it with a progress bar, and summarise it.

Usage:
    python -m services.jobs.submit FOLDER --task classify|detect [--url http://127.0.0.1:3000] [--wait]
        [--top-k 5] [--confidence 0.25] [--version v1] [--out results.jsonl]

The images go up as one multipart body streamed in chunks (``Transfer-Encoding: chunked``), each file
opened only while it is sent, so a folder of any size costs a constant amount of memory and file
handles. With ``--wait`` the job is polled until it ends; ``--out`` writes one JSON line per item.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
TERMINAL = {"succeeded", "partial", "failed", "cancelled"}
_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def folder_images(folder: Path) -> list[Path]:
    """Every image file below ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def multipart_stream(
    fields: dict[str, str], files: Sequence[Path], root: Path, boundary: str, chunk_bytes: int = 1 << 16
) -> Iterator[bytes]:
    """A ``multipart/form-data`` body: ``fields``, then each file as an ``images`` part, read lazily."""
    for name, value in fields.items():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for path in files:
        filename = str(path.relative_to(root)).replace('"', "_")
        content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        with path.open("rb") as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def submit(client: httpx.Client, folder: Path, fields: dict[str, str]) -> dict[str, Any]:
    """Upload every image of ``folder`` as one job; the 202 body (raises on any other answer)."""
    files = folder_images(folder)
    if not files:
        raise SystemExit(f"no images in {folder}")
    boundary = uuid.uuid4().hex
    response = client.post(
        "/api/v1/batch",
        content=multipart_stream({**fields, "mode": "job"}, files, folder, boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    if response.status_code != 202:
        raise SystemExit(f"job refused: {response.status_code} {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


def wait(client: httpx.Client, location: str, *, interval_s: float = 0.5, out: IO[str] | None = None) -> dict[str, Any]:
    """Poll the job until it ends, with a progress bar; its last state (counts only)."""
    from tqdm import tqdm

    job = _poll(client, location)
    with tqdm(total=job["item_count"], unit="img", file=out or sys.stderr, desc=job["status"]) as bar:
        while True:
            done = job["item_count"] - job["counts"]["pending"]
            bar.set_description(job["status"])
            bar.update(done - bar.n)
            if job["status"] in TERMINAL:
                return job
            time.sleep(interval_s)
            job = _poll(client, location)


def _poll(client: httpx.Client, location: str) -> dict[str, Any]:
    """The job's state (counts only); behind the gateway, a 429 waits its Retry-After rather than failing."""
    while True:
        response = client.get(location, params={"limit": 0})
        if response.status_code != 429:
            job: dict[str, Any] = response.raise_for_status().json()
            return job
        time.sleep(float(response.headers.get("Retry-After", "1")))


def items(client: httpx.Client, location: str, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every item of the job, page by page."""
    offset: int | None = 0
    while offset is not None:
        body = client.get(location, params={"offset": offset, "limit": page}).raise_for_status().json()
        yield from body["items"]
        offset = body["next_offset"]


def summary(job: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in job["counts"].items() if n)
    return f"job {job['id']} {job['status']}: {job['item_count']} images ({counts})"


def main(argv: Sequence[str] | None = None, client: httpx.Client | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.jobs.submit", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--task", choices=["classify", "detect"], required=True)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument(
        "--api-key", default=os.environ.get("CV_API_KEY"), help="behind the gateway (default: $CV_API_KEY)"
    )
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--confidence", type=float)
    parser.add_argument("--version")
    parser.add_argument("--out", type=Path, help="write every item (result or problem) as JSON lines")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    args = parser.parse_args(argv)

    fields = {"task": args.task}
    for name in ("top_k", "confidence", "version"):
        if getattr(args, name) is not None:
            fields[name] = str(getattr(args, name))
    own = client is None
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    client = client or httpx.Client(base_url=args.url, timeout=httpx.Timeout(60.0, connect=10.0), headers=headers)
    try:
        accepted = submit(client, args.folder, fields)
        print(f"job {accepted['id']} accepted: {accepted['item_count']} images; follow {accepted['location']}")
        if not args.wait:
            return 0
        job = wait(client, accepted["location"], interval_s=args.interval)
        print(summary(job))
        if args.out:
            with args.out.open("w") as handle:
                for item in items(client, accepted["location"]):
                    handle.write(json.dumps(item) + "\n")
            print(f"items written to {args.out}")
        return 0 if job["status"] == "succeeded" else 1
    finally:
        if own:
            client.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
