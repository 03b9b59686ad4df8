"""Gallery benchmark at 100,000 vectors: HNSW recall@10 against exact search, bare and served search latency,
load time and index memory. Writes benchmarks/reports/gallery.md and gallery.json; see --help.

The gallery: real embedder-v2 embeddings of Tiny-ImageNet val images, topped up to --size with perturbations of
them (each synthetic vector is a real one's log-probabilities plus Gaussian noise, re-normalised: same kind of
vector, same cluster structure, not a copy). The queries are further real val images held out of the gallery.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.common import machine_facts, stats, table, write_report  # noqa: E402

log = logging.getLogger("benchmarks.gallery")
EF_SEARCH = (16, 32, 64, 128, 256, 512)


def embed_real(count: int, cache: Path) -> tuple[np.ndarray, list[bytes], str]:
    """``count`` val images embedded by the default embedder (cached), their JPEG bytes and the embedding space."""
    from services.config import ServingSettings
    from services.index.build_gallery import tiny_imagenet_val
    from services.index.search import embedding_space
    from services.models.worker import InferenceItem, ModelWorker, build_pool

    settings = ServingSettings()
    val = tiny_imagenet_val(settings.datasets_mirror_dir / "tiny-imagenet-200")
    records = [data for (data, _), _ in zip(val, range(count), strict=False)]
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        return saved["vectors"], records, str(saved["space"])
    worker, vectors, space = ModelWorker(build_pool("embedder", settings)), [], ""
    t0 = time.perf_counter()
    for start in range(0, len(records), 32):
        items = [InferenceItem(image=_pixels(d, settings)) for d in records[start : start + 32]]
        for outcome in worker.run(items):
            assert outcome.prediction is not None, outcome.error
            vectors.append(outcome.prediction.result["embedding"])
            space = embedding_space(outcome.prediction)
        log.info("embedded %d/%d (%.0f s)", len(vectors), len(records), time.perf_counter() - t0)
    array = np.asarray(vectors, dtype=np.float32)
    np.savez(cache, vectors=array, space=np.asarray(space))
    return array, records, space


def _pixels(data: bytes, settings: Any) -> np.ndarray:
    from services.imaging import decode_image

    return decode_image(
        data, declared_type=None, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
    ).pixels


def synthetic(real: np.ndarray, count: int, noise: float, seed: int = 0) -> np.ndarray:
    """Perturbations of real probability vectors: softmax(log p + N(0, noise)), L2-normalised."""
    rng = np.random.default_rng(seed)
    base = real[rng.integers(len(real), size=count)]
    logits = np.log(np.clip(base, 1e-7, None)) + noise * rng.normal(size=base.shape).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return normalise(probs)


def normalise(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)


def one_by_one(index: Any, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Each query alone (as a served request searches): scores, labels and latency."""
    found, scores, samples = [], [], []
    for query in queries:
        t0 = time.perf_counter()
        score, labels = index.search(query[None, :], k)
        samples.append((time.perf_counter() - t0) * 1000)
        found.append(labels[0])
        scores.append(score[0])
    return np.asarray(scores), np.asarray(found), stats(samples)


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    """recall@k by id: |found ∩ exact top-k| / k."""
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth.tolist(), found.tolist(), strict=True)]))


def recall_with_ties(truth_scores: np.ndarray, found_scores: np.ndarray, eps: float = 1e-6) -> float:
    """recall@k counting a hit whose similarity ties the exact k-th one's (a different id at the same distance)."""
    return float(np.mean(found_scores >= truth_scores[:, -1:] - eps))


def bare(gallery: np.ndarray, queries: np.ndarray, plan: argparse.Namespace) -> dict[str, Any]:
    """Exact vs HNSW at each efSearch: recall@10, per-query latency, build time and memory."""
    from services.index.vectors import IndexParams

    shipped = IndexParams()
    exact = faiss.IndexFlatIP(gallery.shape[1])
    exact.add(gallery)
    truth_scores, truth, exact_latency = one_by_one(exact, queries)
    sweep, builds = [], {}
    for ef_construction in sorted({shipped.ef_construction, *plan.ef_construction}):
        t0 = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(gallery.shape[1], shipped.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.add(gallery)
        builds[ef_construction] = time.perf_counter() - t0
        for ef in EF_SEARCH:
            hnsw.hnsw.efSearch = ef
            scores, found, latency = one_by_one(hnsw, queries)
            row = {"ef_construction": ef_construction, "ef_search": ef, "recall_at_10": recall(truth, found)}
            sweep.append({**row, "recall_ties": recall_with_ties(truth_scores, scores), **latency})
            log.info("%s ties=%.4f p50=%.3f ms", row, sweep[-1]["recall_ties"], latency["p50"])
    build_s = builds[shipped.ef_construction]
    return {
        "builds_s": builds,
        "exact_ties_at_10th": float(np.mean(np.sum(np.abs(truth_scores - truth_scores[:, -1:]) < 1e-6, axis=1))),
        "exact": exact_latency,
        "hnsw": sweep,
        "shipped": asdict(shipped),
        "hnsw_build_s": build_s,
        "memory_mb": {
            "exact": len(faiss.serialize_index(exact)) / 2**20,
            "hnsw": len(faiss.serialize_index(hnsw)) / 2**20,
        },
    }


def load_sqlite(gallery: np.ndarray, space: str, path: Path) -> dict[str, float]:
    """Write the gallery to a SQLite store, then time opening it (what an embedder does at start)."""
    from services.index.gallery import GalleryIndex

    write_unindexed(gallery, space, path)
    t0 = time.perf_counter()
    reopened = GalleryIndex(path)
    seconds = time.perf_counter() - t0
    kind = reopened.index_kind
    reopened.close()
    return {"load_s": seconds, "kind": kind}  # type: ignore[dict-item]


def write_unindexed(gallery: np.ndarray, space: str, path: Path) -> None:
    """A fresh SQLite store holding ``gallery``, written without an HNSW graph (the server builds its own at start)."""
    from services.index.gallery import GalleryIndex
    from services.index.vectors import IndexParams

    path.unlink(missing_ok=True)
    store = GalleryIndex(path, params=IndexParams(hnsw_threshold=len(gallery) + 1))  # exact while writing: cheap
    for start in range(0, len(gallery), 10_000):
        stop = min(start + 10_000, len(gallery))
        ids = [f"g{i}" for i in range(start, stop)]
        store.add(gallery[start:stop], [{"n": i} for i in range(start, stop)], ids, embedder=space)
    store.close()


def load_postgres(gallery: np.ndarray, space: str, url: str) -> dict[str, Any]:
    """COPY the gallery into a fresh schema's gallery_item, then time a replica's start (load + HNSW build)."""
    import psycopg

    from kernel.db import migrate
    from kernel.db.session import create_db_engine
    from kernel.db.url import sqlalchemy_database_url
    from services.index.postgres import PostgresGallery

    schema = f"bench_gallery_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    scoped = f"{url}?options=-csearch_path%3D{schema}"
    try:
        engine = create_db_engine(sqlalchemy_database_url(scoped, Path(".")))
        migrate.upgrade(engine)
        engine.dispose()
        with (
            psycopg.connect(scoped) as conn,
            conn.cursor() as cursor,
            cursor.copy("COPY gallery_item (id, vector, dim, meta, embedder, deleted, created_at) FROM STDIN") as copy,
        ):
            for i, vector in enumerate(gallery):
                copy.write_row((f"g{i}", vector.tobytes(), gallery.shape[1], json.dumps({"n": i}), space, False, "now"))
        t0 = time.perf_counter()
        replica = PostgresGallery(scoped)
        seconds, kind, size = time.perf_counter() - t0, replica.index_kind, len(replica)
        replica.close()
        return {"load_s": seconds, "kind": kind, "size": size}
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def served(data_dir: Path, query_jpegs: list[bytes], plan: argparse.Namespace) -> dict[str, Any]:
    """`bentoml serve services.api:Api` over the SQLite gallery in ``data_dir``; /api/v1/search at concurrency 1."""
    from services.config import ServingSettings
    from tests.integration.server import start_server

    env = {"CV_DATA_DIR": str(data_dir), "CV_LOG_JSON": "true", "CV_CACHE_ENABLED": "false"}
    in_process = ServingSettings().run_models_in_process  # the server's default too: same environment, no model URLs
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    server = start_server(data_dir / "server.log", env, timeout=600, port=plan.port)
    samples, statuses, searched = [], [], []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in range(plan.warmup + plan.requests):
                jpeg = query_jpegs[i % len(query_jpegs)]
                t0 = time.perf_counter()
                response = client.post(
                    "/api/v1/search", files={"image": ("q.jpg", jpeg, "image/jpeg")}, data={"top_k": "10"}
                )
                latency = (time.perf_counter() - t0) * 1000
                statuses.append(response.status_code)
                if i >= plan.warmup and response.status_code == 200:
                    samples.append(latency)
                    searched.append(response.json().get("gallery_size", 0))
    finally:
        server.stop()
    return {
        "latency": stats(samples),
        "statuses": {str(s): statuses.count(s) for s in set(statuses)},
        "gallery_size": max(searched or [0]),
        "date": started,
        "placement": "the models in the api process" if in_process else "api + embedder services",
    }


def render(results: dict[str, Any]) -> str:
    b, plan, machine = results["bare"], results["plan"], results["machine"]
    synthetic_count = plan["size"] - plan["real_gallery"]
    sweep = [
        [r["ef_construction"], r["ef_search"], *(f"{r[k]:.4f}" for k in ("recall_at_10", "recall_ties")), *_ms(r)]
        for r in b["hnsw"]
    ]
    lines = [
        "# Gallery at 100,000 vectors: exact vs HNSW, bare and served",
        "",
        f"`python benchmarks/gallery.py` (machine: {machine.get('cpu', '?')}, {machine.get('nproc', '?')} cores,"
        " shared with other jobs: absolute numbers are noisy, ratios within the run are what to compare).",
        "",
        "## Data",
        f"- gallery: {plan['size']:,} L2-normalised {b['dim']}-d vectors in the embedding space `{results['space']}`:"
        f" {plan['real_gallery']:,} real embeddings of Tiny-ImageNet val images, plus {synthetic_count:,}"
        f" synthetic ones, each a random real vector's log-probabilities plus N(0, {plan['noise']}) noise,"
        " softmaxed and re-normalised (same kind of vector and cluster structure; not copies).",
        f"- queries: {plan['queries']:,} further real val images, embedded the same way and held out of the gallery.",
        "- ground truth: exact inner-product search (`IndexFlatIP`) over the same vectors;"
        " recall@10 = |HNSW top-10 ∩ exact top-10| / 10.",
        "",
        f"## Bare search, one query at a time (shipped: M={b['shipped']['hnsw_m']},"
        f" efConstruction={b['shipped']['ef_construction']}, efSearch={b['shipped']['ef_search']})",
        "",
        table(
            ["index", "recall@10", "p50 ms", "p99 ms"],
            [["exact (IndexFlatIP)", "1.0000", f"{b['exact']['p50']:.3f}", f"{b['exact']['p99']:.3f}"]],
        ),
        "",
        "HNSW efSearch sweep (recall/latency trade-off):",
        "",
        table(["efConstruction", "efSearch", "recall@10 (ids)", "recall@10 (ties count)", "p50 ms", "p99 ms"], sweep),
        "",
        "## Start-up and memory",
        "",
        table(
            ["what", "value"],
            [
                ["HNSW build over the gallery (faiss add)", f"{b['hnsw_build_s']:.1f} s"],
                [
                    "SQLite store: open 100k rows + build the index",
                    f"{results['load']['sqlite']['load_s']:.1f} s ({results['load']['sqlite']['kind']})",
                ],
                ["PostgreSQL store: replica start (read 100k rows + build)", _pg(results["load"].get("postgres"))],
                ["index memory, exact (serialised size)", f"{b['memory_mb']['exact']:.0f} MiB"],
                ["index memory, HNSW (serialised size)", f"{b['memory_mb']['hnsw']:.0f} MiB"],
            ],
        ),
        "",
        "## Served: POST /api/v1/search at concurrency 1",
        "",
        _served(results.get("served")),
        "",
        *(f"- Note: {note}" for note in results.get("notes", [])),
        "",
    ]
    return "\n".join(lines)


def _ms(latency: dict[str, float]) -> list[str]:
    return [f"{latency['p50']:.3f}", f"{latency['p99']:.3f}"]


def _pg(load: dict[str, Any] | None) -> str:
    return f"{load['load_s']:.1f} s ({load['kind']}, {load['size']:,} rows)" if load else "not measured"


def _served(s: dict[str, Any] | None) -> str:
    if not s:
        return "not measured in this run"
    lat = s["latency"]
    return (
        f"`bentoml serve services.api:Api` ({s.get('placement', 'api + embedder services')}, validation, request ids,"
        f" metrics, JSON logs on, result cache off; {s.get('date', 'date not recorded')})"
        f" over a {s['gallery_size']:,}-image SQLite gallery"
        + (
            f" ({s['real_in_gallery']:,} real embeddings, the rest synthetic as above)"
            if "real_in_gallery" in s
            else ""
        )
        + f": {lat['n']} requests after warm-up,"
        f" p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, mean {lat['mean']:.1f} ms (statuses {s['statuses']})."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=10_000, help="val images embedded (gallery + queries)")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--ef-construction", type=int, nargs="*", default=[], help="also build with these")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--port", type=int, default=43010)
    parser.add_argument("--postgres-url", default=None, help="also time a PostgreSQL replica's start")
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument(
        "--serve-only", action="store_true", help="only the served measurement (a fresh gallery of --size vectors)"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cv-gallery-bench")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "reports" / "gallery.md")
    plan = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan.cache.mkdir(parents=True, exist_ok=True)
    real, jpegs, space = embed_real(plan.real, plan.cache / f"real-{plan.real}.npz")
    real = normalise(real)
    queries, gallery_real = real[: plan.queries], real[plan.queries :]
    gallery = np.concatenate([gallery_real, synthetic(gallery_real, plan.size - len(gallery_real), plan.noise)])
    if plan.serve_only:  # the bare numbers of an earlier run; the served measurement over this run's gallery
        earlier: dict[str, Any] = json.loads(plan.out.with_suffix(".json").read_text())
        write_unindexed(gallery, space, plan.cache / "data" / "gallery.sqlite3")
        earlier["served"] = {
            **served(plan.cache / "data", jpegs[: plan.queries], plan),
            "real_in_gallery": len(gallery_real),
        }
        return write(earlier, plan.out)
    results: dict[str, Any] = {
        "plan": {"size": plan.size, "real_gallery": len(gallery_real), "queries": plan.queries, "noise": plan.noise},
        "space": space,
        "machine": machine_facts(),
        "bare": {**bare(gallery, queries, plan), "dim": gallery.shape[1]},
        "load": {},
    }
    data_dir = plan.cache / "data"
    (data_dir / "gallery.sqlite3").unlink(missing_ok=True)
    results["load"]["sqlite"] = load_sqlite(gallery, space, data_dir / "gallery.sqlite3")
    if plan.postgres_url:
        results["load"]["postgres"] = load_postgres(gallery, space, plan.postgres_url)
    if not plan.no_serve:
        results["served"] = served(data_dir, jpegs[: plan.queries], plan)
    return write(results, plan.out)


def write(results: dict[str, Any], out: Path) -> int:
    write_report(out, render(results), results)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    raise SystemExit(main())
