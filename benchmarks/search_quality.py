"""Search quality as a user gets it: precision@10 through ``POST /api/v1/search``, with and without query expansion.

The gallery is half of the Tiny-ImageNet val split (the even-numbered images, built with
``services.index.build_gallery``'s own code into the served api's data folder); the queries are the other half (the
odd-numbered ones), none of them in the gallery. Each query is sent over HTTP to ``bentoml serve
services.api:Api`` as shipped (result cache off) as the embedder version answers by default, then with each
``expand`` of :data:`WAYS` (query expansion, docs/adr/0015-query-expansion-for-the-class-embedder.md).
precision@10 is the share of the 10 hits whose wnid is the query's. Also records each way's latency at
concurrency 1. Writes benchmarks/reports/search_quality.md and .json.

    python benchmarks/search_quality.py [--queries N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import machine_facts, stats, table, write_report  # noqa: E402

log = logging.getLogger("benchmarks.search_quality")
Record = tuple[bytes, dict[str, Any]]
WAYS = {
    "default (the version's setting)": {},
    "expand=5": {"expand": "5"},
    "expand=10": {"expand": "10"},
    "expand=30": {"expand": "30"},
}


def image_number(record: Record) -> int:
    """``val_123.JPEG`` -> 123."""
    return int(str(record[1]["filename"]).split("_")[1].split(".")[0])


def halves(records: Iterator[Record]) -> tuple[list[Record], list[Record]]:
    """(gallery, queries): the even-numbered val images and the odd-numbered ones."""
    gallery: list[Record] = []
    queries: list[Record] = []
    for record in records:
        (queries if image_number(record) % 2 else gallery).append(record)
    return gallery, queries


def precision_at_10(hits: list[dict[str, Any]], wnid: str) -> float:
    """The share of the (up to) 10 hits of the query's class; missing hits count as misses."""
    return sum(1 for hit in hits[:10] if hit["metadata"].get("wnid") == wnid) / 10


def build_gallery(records: list[Record], data_dir: Path) -> int:
    """Index ``records`` into the gallery store the api under ``data_dir`` will load."""
    from services.config import ServingSettings
    from services.index.build_gallery import build
    from services.index.search import SearchEngine
    from services.index.store import open_gallery
    from services.models.worker import ModelWorker, build_pool

    settings = ServingSettings(data_dir=data_dir)
    index = open_gallery(settings)
    try:
        return build(iter(records), SearchEngine(ModelWorker(build_pool("embedder", settings)), index), settings, 0)
    finally:
        index.close()


def measure(url: str, queries: list[Record]) -> dict[str, Any]:
    """Each query each way, one at a time: precision@10, latency, the expansion the server reported."""
    results: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for way, form in WAYS.items():
            precisions, latencies, expansions = [], [], set()
            for data, meta in queries:
                started = time.perf_counter()
                answer = client.post(
                    "/api/v1/search",
                    files={"image": (meta["filename"], data, "image/jpeg")},
                    data={"top_k": "10", **form},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                body = answer.json()
                expansions.add(body["query_expansion"])
                precisions.append(precision_at_10(body["results"], meta["wnid"]))
            results[way] = {
                "precision_at_10": sum(precisions) / len(precisions),
                "queries": len(precisions),
                "query_expansion": sorted(expansions),
                "latency_ms": stats(latencies),
                "model": body["model"],
                "gallery_size": body["gallery_size"],
            }
            log.info("%s: precision@10 %.4f", way, results[way]["precision_at_10"])
    return results


def _metrics_file(version: str) -> str:
    """Where the evaluate command's figure for this embedder version is, or the file's name where it has none."""
    from services.models.specs.lite0 import CLASS_EMBEDDER_REPORT, FINETUNED_DIRS

    folder = FINETUNED_DIRS.get(version)
    return f"artifacts/{folder}/{CLASS_EMBEDDER_REPORT}" if folder else f"the release's {CLASS_EMBEDDER_REPORT}"


def render(report: dict[str, Any]) -> str:
    rows = [
        [
            way,
            f"{r['precision_at_10']:.4f}",
            ", ".join(map(str, r["query_expansion"])),
            r["queries"],
            r["gallery_size"],
            r["latency_ms"]["p50"],
            r["latency_ms"]["p99"],
        ]
        for way, r in report["results"].items()
    ]
    model = next(iter(report["results"].values()))["model"]
    machine = "\n".join(f"- {k}: {v}" for k, v in report["machine"].items())
    headers = ["search", "precision@10", "query expansion", "queries", "gallery", "p50 ms (c=1)", "p99 ms (c=1)"]
    return f"""# Search quality through the api

Made by `python benchmarks/search_quality.py`: precision@10 of `POST /api/v1/search` (top_k 10) over HTTP, as a user
gets it. Gallery: the even-numbered Tiny-ImageNet val images; queries: the odd-numbered ones, none in the gallery.
The server is `bentoml serve services.api:Api` in local mode, result cache off. Model: {model["name"]}
{model["version"]} ({model["precision"]}).

{table(headers, rows)}

The embedder's own figure (each val image against the other 9,999, `python -m training.evaluate embedder`) is in
{_metrics_file(model["version"])}; here the gallery is half as large, so fewer same-class images are there to find
(25 per class instead of 49).

## Machine

{machine}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queries", type=int, default=0, help="at most N queries (0: all 5,000)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "search_quality.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    from services.config import ServingSettings
    from services.index.build_gallery import tiny_imagenet_val
    from tests.integration.server import start_server

    gallery, queries = halves(tiny_imagenet_val(ServingSettings().datasets_mirror_dir / "tiny-imagenet-200"))
    queries = queries[: args.queries] if args.queries else queries
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cv-search-quality-") as tmp:
        data_dir = Path(tmp) / "data"
        log.info("gallery: %d images", build_gallery(gallery, data_dir))
        env = {"CV_DATA_DIR": str(data_dir), "CV_CACHE_ENABLED": "false", "CV_MODELS_IN_PROCESS": None}
        server = start_server(Path(tmp) / "server.log", env, 240)
        try:
            results = measure(server.url, queries)
        finally:
            server.stop()
    facts = machine_facts() | {"benchmark wall time": f"{time.monotonic() - started:.0f} s"}
    report = {"machine": facts, "results": results}
    write_report(args.out, render(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
