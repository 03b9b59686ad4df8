"""What every model service does with a batch: validate params, group by version, run, isolate failures.

The BentoML services (classifier.py, detector.py, embedder.py) are thin shells around a
:class:`ModelWorker`; the api's in-process backend uses the same class, so HTTP tests and
``bentoml serve`` run one code path.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, PlainSerializer, PlainValidator, ValidationError, WithJsonSchema

from kernel.errors import InvalidParameter, ModelUnavailable, ServiceError, error_to_dict
from kernel.logging import bind_request_id, reset_request_id
from services.config import ServingSettings
from services.metrics import INFERENCE_ITEMS
from services.models.contract import Params, Prediction
from services.models.registry import ModelPool
from services.models.runtime import OrtRunner, TensorrtOptions
from services.models.spec import ModelSpec
from services.models.store import list_versions
from services.process import trim_heap_if_due

log = logging.getLogger(__name__)


def _rgb_array(value: Any) -> np.ndarray:
    if isinstance(value, dict):  # the JSON form, from an api that reaches this service by URL
        value = _from_json(value)
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
        raise ValueError("image must be an H x W x 3 uint8 numpy array")
    return value


def _from_json(value: dict[str, Any]) -> np.ndarray:
    try:
        shape = tuple(int(n) for n in value["shape"])
        data = base64.b64decode(value["data"], validate=True)
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"image is not a {{shape, data}} uint8 array: {exc}") from None


def _to_json(value: np.ndarray) -> dict[str, Any]:
    return {"shape": list(value.shape), "data": base64.b64encode(np.ascontiguousarray(value).data).decode("ascii")}


# In BentoML's pickle media type (its own dependencies) the pixels travel as the array; a model service deployed
# apart is a main server, which accepts JSON only: there they are {"shape": [h, w, 3], "data": base64 of the bytes}.
RGBArray = Annotated[
    np.ndarray,
    PlainValidator(_rgb_array),
    PlainSerializer(_to_json, when_used="json"),
    WithJsonSchema(
        {
            "type": "object",
            "description": "H x W x 3 uint8 RGB pixels: shape and base64 of the row-major bytes",
            "properties": {"shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "string"}},
            "required": ["shape", "data"],
        }
    ),
]


class InferenceItem(BaseModel):
    """One image for a model service: pixels already validated by the api."""

    image: RGBArray
    params: dict[str, Any] = {}
    version: str | None = None
    request_id: str | None = None
    # SHA-256 of the uploaded bytes: the result cache's key (the api sets it; None: not cached).
    image_sha256: str | None = None


class Outcome(BaseModel):
    """A prediction or an error, per item, so one bad item never fails its batch."""

    prediction: Prediction | None = None
    error: dict[str, Any] | None = None
    cached: bool = False  # answered from the api's result cache


def build_pool(name: str, settings: ServingSettings) -> ModelPool:
    """Load every stored version of ``name`` on ONNX Runtime."""

    def runner(path: Path, spec: ModelSpec) -> OrtRunner:
        return OrtRunner(
            path,
            input_name=spec.input.name,
            output_name=spec.output_name,
            providers=settings.ort_providers,
            threads=settings.ort_intra_op_threads,
            spinning=settings.ort_allow_spinning,
            solo_threads=settings.ort_solo_threads,
            tensorrt=TensorrtOptions(settings.ort_trt_fp16, settings.ort_trt_int8, settings.tensorrt_cache_dir),
            cpu_mem_arena=settings.ort_cpu_mem_arena,
            mem_pattern=settings.ort_mem_pattern,
            cpu_max_batch=settings.cpu_max_batch(name),
        )

    return ModelPool(
        name,
        list_versions(name),
        runner,
        pinned_default=settings.default_versions.get(name),
        prefer_int8=settings.prefer_int8,
        max_versions=settings.max_loaded_versions,
    )


class ModelWorker:
    """Runs batches of :class:`InferenceItem` on a :class:`ModelPool`."""

    def __init__(self, pool: ModelPool) -> None:
        self.pool = pool

    def params_type(self) -> type[Params]:
        """The parameters class of the family, taken from a version that loaded."""
        for version in self.pool.versions.values():
            for model in version.models.values():
                return type(model).params_type
        return Params

    def run(self, items: list[InferenceItem]) -> list[Outcome]:
        """Answer every item; errors are per item."""
        if not any(version.models for version in self.pool.versions.values()):
            # Nothing loaded: no family to check the parameters against (they would all read as unknown), no answer.
            return [_failed(ModelUnavailable(f"no version of {self.pool.name} is loaded")) for _ in items]
        outcomes: list[Outcome | None] = [None] * len(items)
        groups: dict[str | None, list[tuple[int, Params]]] = defaultdict(list)
        params_type = self.params_type()
        for index, item in enumerate(items):
            try:
                params = params_type.model_validate(item.params)
            except ValidationError as exc:
                outcomes[index] = _failed(InvalidParameter(_describe(exc)))
                continue
            groups[item.version].append((index, params))
        for version, members in groups.items():
            for index, outcome in self._run_group(items, version, members):
                outcomes[index] = outcome
        trim_heap_if_due()  # what the batch's images and tensors took, back to the kernel (services/process.py)
        return [o if o is not None else _failed(ServiceError()) for o in outcomes]

    def _run_group(
        self, items: list[InferenceItem], version: str | None, members: list[tuple[int, Params]]
    ) -> list[tuple[int, Outcome]]:
        images = [items[i].image for i, _ in members]
        token = bind_request_id(items[members[0][0]].request_id)
        try:
            predictions = self.pool.infer(images, [p for _, p in members], version)
            log.info(
                "batch answered",
                extra={
                    "model": self.pool.name,
                    "size": len(members),
                    "request_ids": [items[i].request_id for i, _ in members],
                },
            )
            return [(i, Outcome(prediction=p)) for (i, _), p in zip(members, predictions, strict=True)]
        except ServiceError as exc:
            if len(members) == 1 or exc.status_code < 500:
                INFERENCE_ITEMS.labels(self.pool.name, version or "default", "error").inc(len(members))
                return [(i, _failed(exc)) for i, _ in members]
            # A batch failed everywhere: run its items alone so only a poison item fails.
            log.warning("batch failed; retrying items one by one", extra={"size": len(members)})
            return [pair for member in members for pair in self._run_group(items, version, [member])]
        finally:
            reset_request_id(token)


def _failed(error: ServiceError) -> Outcome:
    return Outcome(error=error_to_dict(error))


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts)
