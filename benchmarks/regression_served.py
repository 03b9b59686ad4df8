"""The served half of the regression check: both sides' `bentoml serve services.api:Api` up at once, load rounds
interleaved between them, server CPU time per request, and accuracy on a fixed sample through each side's routes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.loopback import tree_cpu_seconds
from benchmarks.regression_sides import Side
from benchmarks.serving import ROUTES
from benchmarks.serving import _load as load_once  # one load at a concurrency, no warm-up
from tests.integration.server import Server, start_server

log = logging.getLogger("benchmarks.regression")
MEASURED_ROUTES = ("classify", "detect")
CONCURRENCIES = (1, 16)
SAMPLE_SEED = 20240601
# What test_detector_map sends for mAP: every box the model has, class-aware NMS at 0.65.
MAP_FIELDS = {"confidence": "0.001", "iou": "0.65", "max_detections": "100"}


@contextmanager
def serving(sides: list[Side], workdir: Path, ports: list[int | None]) -> Iterator[dict[str, Server]]:
    """Each side's api (and its model services) started in turn from its own root; all stopped afterwards."""
    with ExitStack() as stack:
        servers = {}
        for side, port in zip(sides, ports, strict=True):
            log.info("%s: starting bentoml serve from %s", side.name, side.root)
            server = start_server(workdir / f"server-{side.name}.log", side.env(), 240, cwd=side.root, port=port)
            stack.callback(server.stop)
            servers[side.name] = server
        yield servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (0 when it is gone)."""
    with suppress(psutil.Error):
        return tree_cpu_seconds(psutil.Process(pid))
    return 0.0


def one_round(server: Server, route: str, jpeg: bytes, concurrency: int, total: int) -> dict[str, Any]:
    """One load at ``concurrency``, with the server's CPU seconds per successful request."""
    before = cpu_seconds(server.process.pid)
    result = asyncio.run(load_once(server.url, route, jpeg, concurrency, total))
    used = cpu_seconds(server.process.pid) - before
    result["cpu_ms_per_request"] = used * 1000 / result["ok"] if result["ok"] else float("nan")
    result.pop("stages", None)
    return result


def load_rounds(servers: dict[str, Server], jpegs: dict[str, bytes], plan: Any) -> dict[str, Any]:
    """Warm every server up, then ``plan.rounds`` rounds, each route and concurrency run on both sides in turn.

    The order flips every round (A B, B A, ...) so that a drift of the machine weighs on both sides alike.
    """
    names = list(servers)
    counts = {1: plan.sequential, 16: plan.requests}
    for name in names:
        for route in MEASURED_ROUTES:
            for concurrency in CONCURRENCIES:
                asyncio.run(load_once(servers[name].url, route, _jpeg(jpegs, route), concurrency, plan.warmup))
    out: dict[str, Any] = {n: {r: {str(c): [] for c in CONCURRENCIES} for r in MEASURED_ROUTES} for n in names}
    for index in range(plan.rounds):
        order = names if index % 2 == 0 else names[::-1]
        for route in MEASURED_ROUTES:
            for concurrency in CONCURRENCIES:
                for name in order:
                    result = one_round(servers[name], route, _jpeg(jpegs, route), concurrency, counts[concurrency])
                    log.info(
                        "round %d %s %s c=%d: %.1f req/s, p50 %.1f ms, %s",
                        index,
                        name,
                        route,
                        concurrency,
                        result["throughput"],
                        result["p50"],
                        result["statuses"],
                    )
                    out[name][route][str(concurrency)].append(result)
    return out


def _jpeg(jpegs: dict[str, bytes], route: str) -> bytes:
    return jpegs[ROUTES[route][1]]


# ---- accuracy on a fixed sample ------------------------------------------------------------------------------


def classifier_sample(datasets_mirror: Path, size: int, seed: int = SAMPLE_SEED) -> list[tuple[bytes, str]]:
    """``size`` Tiny-ImageNet val images picked with a fixed seed: (JPEG bytes, wnid)."""
    from services.index.build_gallery import tiny_imagenet_val

    records = list(tiny_imagenet_val(datasets_mirror / "tiny-imagenet-200"))
    chosen = sorted(random.Random(seed).sample(range(len(records)), min(size, len(records))))
    return [(records[i][0], str(records[i][1]["wnid"])) for i in chosen]


def coco_sample(datasets_mirror: Path, workdir: Path, size: int) -> tuple[dict[str, Any], list[Path]]:
    """The first ``size`` held-out COCO val2017 images and their ground truth (pycocotools dict)."""
    from training.data.coco import yolo_ground_truth

    with tarfile.open(datasets_mirror / "coco128" / "coco-val2017-first128.tar.gz") as tar:
        tar.extractall(workdir / "coco", filter="data")
    root = next((workdir / "coco").rglob("images/val2017")).parent.parent
    truth, paths = yolo_ground_truth(root, "val2017")
    keep = set(range(1, min(size, len(paths)) + 1))
    truth = {
        **truth,
        "images": [i for i in truth["images"] if i["id"] in keep],
        "annotations": [a for a in truth["annotations"] if a["image_id"] in keep],
    }
    return truth, paths[: len(keep)]


async def _post_all(url: str, images: list[bytes], fields: dict[str, str], concurrency: int = 4) -> list[Any]:
    """Every image to ``url`` (``concurrency`` at a time); the JSON bodies in order, None for a failed request."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120) as client:

        async def one(data: bytes) -> Any:
            async with gate:
                response = await client.post(url, files={"image": ("i.jpg", data, "image/jpeg")}, data=fields)
            return response.json() if response.status_code == 200 else None

        return list(await asyncio.gather(*(one(data) for data in images)))


def _top1(body: Any, wnid: str) -> bool:
    if body is None or not body.get("predictions"):
        return False
    top = body["predictions"][0]
    return bool(top.get("label_id") == wnid or top.get("label") == wnid)


def accuracy(server: Server, classify: list[tuple[bytes, str]], coco: tuple[dict[str, Any], list[Path]]) -> Any:
    """Classifier top-1 and detector mAP (both in percent) through the side's served routes."""
    from training.evaluate import coco_map, to_coco_results

    bodies = asyncio.run(_post_all(f"{server.url}/api/v1/classify", [d for d, _ in classify], {"top_k": "1"}))
    truth, paths = coco
    answers = asyncio.run(_post_all(f"{server.url}/api/v1/detect", [p.read_bytes() for p in paths], MAP_FIELDS))
    detections = [d for i, body in enumerate(answers, 1) if body is not None for d in to_coco_results(i, body)]
    scores = coco_map(truth, detections) if all(b is not None for b in answers) else {"map50_95": float("nan")}
    failed = sum(b is None for b in bodies) + sum(b is None for b in answers)
    return {
        "classifier_top1": 100 * sum(_top1(b, w) for b, (_, w) in zip(bodies, classify, strict=True)) / len(classify),
        "detector_map50_95": 100 * scores["map50_95"],
        "failed_requests": failed,
        "images": {"classifier": len(classify), "detector": len(paths)},
    }
