"""The detector service: YOLOX-Nano on ONNX Runtime, adaptive batching."""

from __future__ import annotations

import bentoml

from services.model_service import ModelService, service_config


@bentoml.service(**service_config("detector"))
class DetectorService(ModelService):
    model_name = "detector"
