"""The detector service: YOLOX-Nano on ONNX Runtime, adaptive batching."""

from __future__ import annotations

import bentoml

from services.model_service import SERVICE_CONFIG, ModelService


@bentoml.service(name="detector", **SERVICE_CONFIG)
class DetectorService(ModelService):
    model_name = "detector"
