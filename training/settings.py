"""Settings for the offline tools (training, export, quantization, evaluation, data downloads).

One settings class per process kind (STYLE.md, habit 1). The offline tools read five of the
serving settings' ``CV_*`` variables, with the same names and defaults, so one environment drives
both: ``CV_MODEL_MIRROR_DIR``, ``CV_DATASETS_MIRROR_DIR``, ``CV_DATA_DIR``, ``CV_ARTIFACTS_DIR`` and
``CV_DRIFT_REFERENCE_DIR``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.paths import REPO_ROOT


class TrainingSettings(BaseSettings):
    """Where the offline tools find model files and data sets, and where they write."""

    model_config = SettingsConfigDict(env_prefix="CV_", env_file=".env", extra="ignore")

    # Model files from their official sources (YOLOX-Nano); here ../shared/models.
    model_mirror_dir: Path = REPO_ROOT.parent / "shared" / "models"
    # Data sets (Tiny-ImageNet, COCO128) as unpacked or as shipped (tarballs + unpack.sh).
    datasets_mirror_dir: Path = REPO_ROOT.parent / "shared" / "datasets"
    # ONNX exports and their reports, committed to the repository.
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    # Unpacked data sets (datasets/), feature caches (cache/) and built model files (models/).
    data_dir: Path = REPO_ROOT / ".data"
    # Drift reference profiles, where the api reads them (the serving settings' CV_DRIFT_REFERENCE_DIR).
    drift_reference_dir: Path = REPO_ROOT / "artifacts" / "drift"


@lru_cache
def get_training_settings() -> TrainingSettings:
    """Return the process-wide training settings, read once from the environment."""
    return TrainingSettings()
