"""`bentoml build` for every bentofile, offline, into the test model store: each Bento names its service and
packages its models' production versions, and its source imports on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import yaml

from services.models.catalogue import CATALOGUE, MODEL_NAMES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
# bentofile -> (the Bento's name, its service, the models it serves)
BENTOFILES = {
    **{f"bentos/{e.name}/bentofile.yaml": (e.name, e.service, (e.name,)) for e in CATALOGUE},
    "bentos/api/bentofile.yaml": ("api", "services.api:Api", MODEL_NAMES),
    "bentofile.yaml": ("api", "services.api:Api", MODEL_NAMES),
}


def _production_tags() -> dict[str, str]:
    """Each model's production version, as the import scripts labelled it in the store."""
    tags = {}
    for model in bentoml.models.list():
        if model.info.labels.get("stage") == "production":
            assert model.tag.name not in tags, f"two production versions of {model.tag.name}"
            tags[model.tag.name] = str(model.tag)
    return tags


def _env(bentoml_home: str) -> dict[str, str]:
    # No index, no proxy: a build that tried the network would fail here rather than hang.
    offline = {"PIP_NO_INDEX": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    # As `make bentos` builds them: the api Bento is the api and one service per model (its bentofile says why).
    placement = {"CV_MODELS_IN_PROCESS": "false"}
    return {**os.environ, "BENTOML_HOME": bentoml_home, "BENTOML_DO_NOT_TRACK": "true", **offline, **placement}


@pytest.mark.parametrize("bentofile", list(BENTOFILES))
def test_bentofile_builds_offline_with_its_service_and_production_models(
    bentofile: str, model_store: list[str], bentoml_home: str
) -> None:
    name, service, models = BENTOFILES[bentofile]
    done = subprocess.run(
        [BENTOML, "build", "-f", bentofile, "--output", "tag", "."],
        cwd=REPO,
        env=_env(bentoml_home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento_dir = Path(bentoml_home) / "bentos" / name / tag.partition(":")[2]
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())

    assert (info["name"], info["service"]) == (name, service)
    production = _production_tags()
    assert sorted(m["tag"] for m in info["models"]) == sorted(production[m] for m in models)
    assert {s["name"] for s in info["services"]} >= set(models) - {"api"}

    # The Bento's own source, without the repository on the path, holds everything the service imports.
    module, _, cls = service.partition(":")
    src = bento_dir / "src"
    check = f"import importlib; getattr(importlib.import_module({module!r}), {cls!r})"
    env = {**_env(bentoml_home), "PYTHONPATH": str(src)}
    imported = subprocess.run(
        [sys.executable, "-c", check], cwd=src, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
