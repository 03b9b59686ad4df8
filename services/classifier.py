"""The classifier service: EfficientNet-Lite0 on ONNX Runtime, adaptive batching."""

from __future__ import annotations

import bentoml

from services.model_service import SERVICE_CONFIG, ModelService


@bentoml.service(name="classifier", **SERVICE_CONFIG)
class ClassifierService(ModelService):
    model_name = "classifier"
