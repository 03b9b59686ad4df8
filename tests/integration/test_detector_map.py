"""The served detector's COCO mAP@0.5:0.95 on the held-out first 128 val2017 images, per precision.

../shared/models/README.md measured 0.339 with YOLO labels, score threshold 0.001 and
class-aware NMS 0.65; the served FP32 pipeline must land within 0.005 of it. Serving prefers
INT8: the default server must answer with the INT8 file and land within 0.005 of the INT8
value measured in artifacts/yolox_nano/quantization.json (itself at most 0.015 below FP32).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.config import get_settings
from tests.integration.server import Server, start_server
from training.data.coco import yolo_ground_truth
from training.evaluate import coco_map, to_coco_results

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REFERENCE_MAP = 0.339
TOLERANCE = 0.005
INT8_MAX_LOSS = 0.015


@pytest.fixture(scope="module")
def fp32_server(
    model_store: list[str], bentoml_home: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A second server with the INT8 preference off, so every model answers with its FP32 file."""
    data = tmp_path_factory.mktemp("fp32-server-data")
    env = {"BENTOML_HOME": bentoml_home, "CV_DATA_DIR": str(data), "CV_PREFER_INT8": "false"}
    running = start_server(data / "server.log", env)
    yield running
    running.stop()


async def _detect_all(url: str, paths: list[Path]) -> tuple[list[dict], set[str]]:
    semaphore = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(image_id: int, path: Path) -> tuple[list[dict], str]:
            async with semaphore:
                response = await client.post(
                    url,
                    files={"image": (path.name, path.read_bytes(), "image/jpeg")},
                    data={"confidence": "0.001", "iou": "0.65", "max_detections": "100"},
                )
            response.raise_for_status()
            body = response.json()
            return to_coco_results(image_id, body), body["model"]["precision"]

        results = await asyncio.gather(*(one(i, p) for i, p in enumerate(paths, start=1)))
    return [d for detections, _ in results for d in detections], {precision for _, precision in results}


def _served_map(server: Server, coco_val: Path) -> tuple[dict[str, float], set[str]]:
    gt_data, paths = yolo_ground_truth(coco_val, "val2017")
    assert len(paths) == 128
    detections, precisions = asyncio.run(_detect_all(f"{server.url}/api/v1/detect", paths))
    return coco_map(gt_data, detections), precisions


def test_served_fp32_detector_map_matches_the_reference(fp32_server: Server, coco_val: Path) -> None:
    result, precisions = _served_map(fp32_server, coco_val)
    print(f"served FP32 detector mAP@0.5:0.95 = {result['map50_95']:.4f}, mAP@0.5 = {result['map50']:.4f}")
    assert precisions == {"fp32"}
    assert abs(result["map50_95"] - REFERENCE_MAP) <= TOLERANCE, result


def test_served_int8_detector_map_matches_its_measurement(server: Server, coco_val: Path) -> None:
    report = get_settings().artifacts_dir / "yolox_nano" / "quantization.json"
    if not report.is_file():
        pytest.skip(f"{report} not found")
    measured = json.loads(report.read_text())["chosen"]["map50_95"]
    result, precisions = _served_map(server, coco_val)
    print(f"served INT8 detector mAP@0.5:0.95 = {result['map50_95']:.4f} (measured {measured:.4f})")
    assert precisions == {"int8"}
    assert abs(result["map50_95"] - measured) <= TOLERANCE, result
    assert REFERENCE_MAP - result["map50_95"] <= INT8_MAX_LOSS, result
