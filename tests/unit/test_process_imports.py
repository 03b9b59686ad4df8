"""What each kind of process imports: only what it runs (docs/adr/0017-service-modules-import-lightly.md).

Each check imports a module in a fresh interpreter, as the process that runs it would, and lists what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kernel.paths import REPO_ROOT

# What a process that serves no request must not load: the data plane, the job queue, the vector index, the models'
# runtime, the public routes.
WORKER_ONLY = (
    "sqlalchemy",
    "celery",
    "kombu",
    "faiss",
    "psycopg",
    "redis",
    "cv2",
    "onnxruntime",
    "services.http.app",
    "services.http.dataplane",
    "gateway.inprocess",
    "scipy",
)


def _loaded(code: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["services.api", "services.classifier", "services.detector", "services.embedder"])
def test_bentomls_supervisor_loads_nothing_only_the_worker_uses(module: str) -> None:
    assert not _loaded(f"import {module}") & set(WORKER_ONLY)


def test_the_built_api_loads_scipy_only_for_a_drift_test() -> None:
    assert "scipy" not in _loaded("import services.api; services.api.app.get()")
    code = "from services.drift.detect import _ks; _ks('f', [0.0, 1.0, 2.0], [5.0, 6.0, 7.0])"
    assert "scipy.stats" in _loaded(code)


def test_celery_beat_loads_no_task_module() -> None:
    loaded = _loaded("import services.jobs.celery_beat as b; b.app.loader.init_worker()")
    assert not loaded & {"services.jobs.tasks", "services.models.worker", "numpy", "scipy", "PIL"}


def test_the_job_worker_loads_scipy_before_its_pool_forks() -> None:
    assert "scipy.stats" in _loaded("import services.jobs.celery_app")
