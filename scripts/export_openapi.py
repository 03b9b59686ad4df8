"""Export the API's OpenAPI document, its examples and a Postman collection from the running service.

Usage::

    python scripts/export_openapi.py --serve                 # start `bentoml serve` on a free port, then export
    python scripts/export_openapi.py --url http://127.0.0.1:3000

It sends one real request per route (real photos, the real models) and keeps each answer as that route's
example (``services/http/openapi_examples.json``, which the service publishes in its spec), then writes the
spec the service publishes with them (``docs/openapi.json``), a Postman collection generated from it
(``docs/postman_collection.json``) and the error catalogue of ``docs/api.md``, from the error registry.
``tests/integration/http/test_published_spec.py`` fails when the served spec and the committed one differ.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.topology import free_port  # noqa: E402
from gateway.errors import GATEWAY_ERRORS  # noqa: E402
from scripts.openapi_docs import error_catalogue, postman_collection, replace_section, route_reference  # noqa: E402
from services.http.openapi import EXAMPLES_FILE  # noqa: E402
from services.models.specs.lite0 import SERVED  # noqa: E402

Examples = dict[str, dict[str, Any]]
# What the served api runs with beside the caller's environment (its own data folder with --serve); the experiment
# command of the capture writes to the same database.
_SERVER_ENV: dict[str, str] = {}


def _photos() -> dict[str, bytes]:
    from PIL import Image
    from skimage import data

    out = {}
    for name, array in (("chelsea.jpg", data.chelsea()), ("coffee.jpg", data.coffee())):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG")
        out[name] = buffer.getvalue()
    return out


def _file(name: str, content: bytes) -> tuple[str, bytes, str]:
    return (name, content, "image/jpeg")


def capture(client: httpx.Client) -> Examples:
    """One real answer per route; the request as a form (file fields named, not inlined)."""
    photos = _photos()
    examples: Examples = {}

    def keep(key: str, request: dict[str, Any] | None, response: httpx.Response) -> httpx.Response:
        response.raise_for_status()
        entry = examples.setdefault(key, {})
        entry.setdefault("responses", {})[str(response.status_code)] = response.json()
        if request is not None:
            entry.setdefault("request", request)
        return response

    chelsea, coffee = _file("chelsea.jpg", photos["chelsea.jpg"]), _file("coffee.jpg", photos["coffee.jpg"])
    keep(
        "POST /classify",
        {"image": "chelsea.jpg", "top_k": 3},
        client.post("/classify", files={"image": chelsea}, data={"top_k": "3"}),
    )
    keep(
        "POST /detect",
        {"image": "coffee.jpg", "confidence": 0.4},
        client.post("/detect", files={"image": coffee}, data={"confidence": "0.4"}),
    )
    keep(
        "POST /batch",
        {"images": ["chelsea.jpg", "coffee.jpg"], "task": "classify"},
        client.post("/batch", files=[("images", chelsea), ("images", coffee)], data={"task": "classify", "top_k": "1"}),
    )
    job = keep(
        "POST /batch", None, client.post("/batch", files=[("images", chelsea)], data={"task": "detect", "mode": "job"})
    )
    job_id = job.json()["id"]
    _wait_for_job(client, job_id)
    keep("GET /jobs/{job_id}", None, client.get(f"/jobs/{job_id}"))
    cancelled = client.post("/batch", files=[("images", coffee)], data={"task": "classify", "mode": "job"})
    keep("DELETE /jobs/{job_id}", None, client.delete(f"/jobs/{cancelled.json()['id']}"))  # 202: cancelled
    keep("DELETE /jobs/{job_id}", None, client.delete(f"/jobs/{job_id}"))  # 200: it had ended
    added = keep(
        "POST /gallery",
        {"image": "coffee.jpg", "metadata": '{"source": "skimage"}'},
        client.post("/gallery", files={"image": coffee}, data={"metadata": '{"source": "skimage"}'}),
    )
    keep("GET /gallery", None, client.get("/gallery"))
    keep(
        "POST /search",
        {"image": "chelsea.jpg", "top_k": 3},
        client.post("/search", files={"image": chelsea}, data={"top_k": "3"}),
    )
    client.delete(f"/gallery/{added.json()['id']}").raise_for_status()
    keep("GET /models", None, client.get("/models"))
    keep("GET /health", None, client.get("/health"))
    keep("GET /drift/{model}", None, client.get("/drift/classifier", params={"window": 500}))
    _experiment_examples(client, keep, chelsea)
    return examples


def _experiment_examples(client: httpx.Client, keep: Callable[..., httpx.Response], image: Any) -> None:
    """An A/A experiment on the classifier (both arms on the production version), one answer and its feedback."""
    env = {**os.environ, **_SERVER_ENV}
    command = [sys.executable, "-m", "services.experiments", "create", "--model", "classifier", "--id", "clf-aa"]
    arms = ["--arm", f"control={SERVED}:50", "--arm", f"candidate={SERVED}:50", "--salt", "docs"]
    subprocess.run([*command, *arms], cwd=REPO, env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 30  # the api re-reads running experiments every CV_EXPERIMENTS_REFRESH_S
    while True:
        answer = client.post("/classify", files={"image": image}, headers={"X-Client-Id": "alice"})
        if answer.json().get("experiment") or time.monotonic() > deadline:
            break
        time.sleep(1)
    feedback = {"request_id": answer.json()["request_id"], "label": answer.json()["predictions"][0]["label"]}
    keep("POST /feedback", feedback, client.post("/feedback", json=feedback))
    keep("GET /experiments", None, client.get("/experiments"))
    keep("GET /experiments/{experiment_id}", None, client.get("/experiments/clf-aa"))


def _wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get(f"/jobs/{job_id}").json()["status"] not in ("queued", "running"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout_s:.0f} s (is a job worker running?)")


@contextmanager
def serving(log_path: Path) -> Iterator[str]:
    """`bentoml serve services.api:Api` on a free loopback port, with its embedded job worker; stopped after."""
    port = free_port()
    data_dir = log_path.parent / "export-openapi-data"  # its own database and gallery, fresh each time
    shutil.rmtree(data_dir, ignore_errors=True)
    _SERVER_ENV["CV_DATA_DIR"] = str(data_dir)
    env = {**os.environ, "CV_CACHE_ENABLED": "false", "CV_JOBS_EMBEDDED_WORKER": "true", **_SERVER_ENV}
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [bentoml, "serve", "services.api:Api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process.poll, log_path)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wait_healthy(url: str, poll: Callable[[], int | None], log_path: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if poll() is not None:
            raise RuntimeError(f"the server exited; see {log_path}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the server at {url} was not healthy in {timeout_s:.0f} s; see {log_path}")


def export(url: str, docs: Path) -> None:
    """Capture the examples from the service at ``url``, then write the spec, Postman and the catalogue."""
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as client:
        examples = capture(client)
    EXAMPLES_FILE.write_text(json.dumps(examples, indent=2, sort_keys=True) + "\n")
    # The spec as the service builds it, now with these examples (a restarted service serves the same).
    from services.api import app
    from services.http.openapi import build_spec

    spec = build_spec(app.get(), extra_errors=GATEWAY_ERRORS, examples=examples)
    (docs / "openapi.json").write_text(json.dumps(spec, indent=2) + "\n")
    (docs / "postman_collection.json").write_text(json.dumps(postman_collection(spec), indent=2) + "\n")
    api_md = docs / "api.md"
    text = replace_section(api_md.read_text(), "routes", route_reference(spec))
    api_md.write_text(replace_section(text, "errors", error_catalogue(GATEWAY_ERRORS)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running api service, e.g. http://127.0.0.1:3000")
    where.add_argument("--serve", action="store_true", help="start `bentoml serve` on a free port for the export")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args(argv)
    if args.url:
        export(args.url.rstrip("/"), args.docs)
    else:
        with serving(Path(os.environ.get("TMPDIR", "/tmp")) / "export-openapi.log") as url:
            export(url, args.docs)
    print(f"wrote {EXAMPLES_FILE.relative_to(REPO)}, docs/openapi.json, docs/postman_collection.json, docs/api.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
