"""The classifier service: EfficientNet-Lite0 on ONNX Runtime, adaptive batching."""

from __future__ import annotations

import bentoml

from services.model_service import ModelService, service_config


@bentoml.service(**service_config("classifier"))
class ClassifierService(ModelService):
    model_name = "classifier"
