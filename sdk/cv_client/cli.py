"""The ``cv`` command: classify, detect, search and batch from a shell, answers as JSON.

cv classify photo.jpg
cv detect street.jpg --out annotated.jpg
cv search photo.jpg --top-k 3
cv batch photos/ --task classify        # a batch job, with a progress bar; one JSON line per image
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from cv_client.client import Client
from cv_client.errors import ApiError, CvClientError
from cv_client.models import Result

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cv", description="Command line of the cv-api.")
    parser.add_argument("--url", help="server root or /api/v1 root (default: $CV_API_URL or http://127.0.0.1:3000)")
    parser.add_argument("--api-key", help="API key (default: $CV_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser("classify", help="top-k labels of an image")
    classify.add_argument("path", type=Path)
    classify.add_argument("--top-k", type=int, default=5)
    classify.add_argument("--version", help="pin a model version")

    detect = commands.add_parser("detect", help="objects in an image")
    detect.add_argument("path", type=Path)
    detect.add_argument("--confidence", type=float)
    detect.add_argument("--iou", type=float)
    detect.add_argument("--max-detections", type=int)
    detect.add_argument("--classes", type=lambda raw: [int(c) for c in raw.split(",")], help="e.g. 0,2")
    detect.add_argument("--version", help="pin a model version")
    detect.add_argument("--out", type=Path, help="write the image with the boxes drawn here")

    search = commands.add_parser("search", help="the most similar gallery images")
    search.add_argument("path", type=Path)
    search.add_argument("--top-k", type=int, default=5)
    search.add_argument("--expand", type=int, default=None, help="query expansion (0: none; default: the server's)")

    batch = commands.add_parser("batch", help="a batch job over a folder's images, one JSON line per image")
    batch.add_argument("folder", type=Path)
    batch.add_argument("--task", choices=("classify", "detect"), default="classify")
    batch.add_argument("--top-k", type=int)
    batch.add_argument("--poll-interval", type=float, default=1.0)
    batch.add_argument("--wait-timeout", type=float, help="give up waiting after this many seconds")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    commands.add_parser("models", help="models, versions and their state")
    commands.add_parser("health", help="the server's health")
    return parser


def _emit(value: Result | dict[str, Any]) -> None:
    text = value.model_dump_json(exclude_none=False) if isinstance(value, Result) else json.dumps(value)
    sys.stdout.write(text + "\n")


def folder_images(folder: Path) -> list[Path]:
    """The folder's image files, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _batch(client: Client, args: argparse.Namespace) -> None:
    paths = folder_images(args.folder)
    if not paths:
        raise CvClientError(f"no images in {args.folder}")
    options = {"top_k": args.top_k} if args.top_k is not None else {}
    job = client.submit_batch(paths, args.task, **options)
    done = client.wait(job, poll_interval=args.poll_interval, timeout=args.wait_timeout, progress=not args.no_progress)
    for item in done.items:
        line = item.model_dump(mode="json")
        line["path"] = str(paths[item.index])
        _emit(line)


def _detect(client: Client, args: argparse.Namespace) -> None:
    result = client.detect(
        args.path,
        confidence=args.confidence,
        iou=args.iou,
        max_detections=args.max_detections,
        classes=args.classes,
        version=args.version,
    )
    _emit(result)
    if args.out:
        result.draw(args.path).save(args.out)
        sys.stderr.write(f"{len(result.detections)} detections drawn on {args.out}\n")


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], None]] = {
    "classify": lambda c, a: _emit(c.classify(a.path, top_k=a.top_k, version=a.version)),
    "detect": _detect,
    "search": lambda c, a: _emit(c.search(a.path, top_k=a.top_k, expand=a.expand)),
    "batch": _batch,
    "models": lambda c, a: _emit(c.models()),
    "health": lambda c, a: _emit(c.health()),
}


def main(argv: Sequence[str] | None = None, *, transport: httpx.BaseTransport | None = None) -> int:
    """Run one command; 0 on success, 1 on an API error (its problem on stderr), 2 on a usage error."""
    args = _parser().parse_args(argv)
    try:
        with Client(args.url, api_key=args.api_key, timeout=args.timeout, transport=transport) as client:
            COMMANDS[args.command](client, args)
    except ApiError as exc:
        problem = exc.body if exc.body is not None else {"status": exc.status, "title": exc.title, "detail": exc.detail}
        sys.stderr.write(json.dumps(problem) + "\n")
        return 1
    except (CvClientError, OSError, httpx.HTTPError) as exc:
        sys.stderr.write(f"cv: {exc}\n")
        return 1
    return 0
