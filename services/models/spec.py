"""What travels with a model version's weights: everything needed to rebuild its pipeline.

A :class:`ModelSpec` is written into the BentoML model store's ``metadata`` by
``bentos/<model>/import_model.py`` and read back at load time, so preprocessing is
rebuilt from it and never hard-coded (STYLE.md, habit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.config import Stage

Task = Literal["classification", "detection", "embedding"]


class Letterbox(BaseModel):
    """Keep the aspect ratio, scale to fit, pad the rest."""

    pad_value: int = 114
    align: Literal["top-left", "center"] = "top-left"
    # 0: pad to the whole height x width. > 0: pad only to the smallest canvas of whole strides that holds the scaled
    # image and one stride more (a 4:3 photo: 416 x 352 instead of 416 x 416, 0.85x the detector's compute). The extra
    # stride keeps the grey the network was trained to see past the image's edge: without it (416 x 320) the INT8
    # detector lost 0.006 mAP on COCO128, with it 0.0003 (TECHNICAL.md). Only for a network whose input height and
    # width are symbolic and whose layers take any multiple of stride (the detector's import makes them so:
    # training/yolox_batch.py); images of different canvases run in separate calls.
    stride: int = Field(default=0, ge=0)


class InputSpec(BaseModel):
    """How an RGB uint8 image becomes the network's input tensor."""

    name: str = "images"
    height: int
    width: int
    color_order: Literal["RGB", "BGR"] = "RGB"
    # Pixels (0..255) are turned into (pixel * scale - mean) / std, per channel in color_order.
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # "pil_bicubic": Pillow's antialiased bicubic; "cv2_linear": OpenCV INTER_LINEAR.
    interpolation: Literal["pil_bicubic", "pil_bilinear", "cv2_linear"] = "pil_bicubic"
    # resize: "crop" resizes the shorter side to size / crop_pct and centre-crops;
    # "letterbox" keeps the whole image (see ``letterbox``).
    resize: Literal["crop", "letterbox"] = "crop"
    crop_pct: float = Field(default=1.0, gt=0.0, le=1.0)
    letterbox: Letterbox | None = None


MAX_QUERY_EXPANSION = 50


class EmbeddingOutput(BaseModel):
    """How an embedding model's vector is made from the network output it reads (``ModelSpec.output_name``).

    ``none``: the output is the embedding (pooled features). ``softmax``: the output is a classifier's
    logits and the embedding is its class-probability vector, ``softmax(logits / temperature)``: images
    land near others the classifier takes for the same classes (the Tiny-ImageNet embedders, from their
    classifiers' files). Either way the vector is L2-normalised.
    """

    transform: Literal["none", "softmax"] = "none"
    temperature: float = Field(default=1.0, gt=0.0)
    # Test-time augmentation: the vector is the mean of the image's and its mirror image's (each transformed as
    # above), from one runtime call on twice the rows (1.8x the batch-1 run). Off for every version so far: for
    # embedder v8 it gains a point of precision@10 on val but loses 0.2 on train images, where a version's settings
    # are chosen (TECHNICAL.md, "Embedder v2"); `python -m training.evaluate embedder --flip` measures it.
    flip: bool = False
    # How many of a query's nearest gallery vectors a search adds to it before searching again (query expansion,
    # services/index/vectors.py); 0: plain search. A request's ``expand`` overrides it. Chosen per version on train
    # images, never on the val split it is reported on (docs/adr/0015-query-expansion-for-the-class-embedder.md).
    query_expansion: int = Field(default=0, ge=0, le=MAX_QUERY_EXPANSION)


class ModelSpec(BaseModel):
    """One model version: identity, pipeline, outputs, provenance."""

    name: str
    version: str
    task: Task
    arch: str
    stage: Stage = Stage.PRODUCTION
    input: InputSpec
    output_name: str
    embedding: EmbeddingOutput | None = None  # embedding models only; None: the output is the embedding
    labels: list[str] = Field(default_factory=list)
    files: dict[str, str]  # precision ("fp32", "int8") -> file name inside the entry
    licence: str = ""
    source: str = ""
    sha256: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def public(self) -> dict[str, Any]:
        """What ``GET /api/v1/models`` shows: everything but the label list itself."""
        data = self.model_dump(mode="json", exclude={"labels"})
        data["num_labels"] = len(self.labels)
        return data


class LoadedFiles(BaseModel):
    """A spec plus the absolute paths of its files in the model store."""

    spec: ModelSpec
    paths: dict[str, Path]
