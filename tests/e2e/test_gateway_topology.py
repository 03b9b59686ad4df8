"""End to end through Traefik: keys, tiers and limits at the edge, both api replicas, and one of them killed.

Every request goes to Traefik's public entry point; nothing here talks to a service behind it except to
read its log. The replica-kill test is last: it leaves one api replica.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deploy.runner import Topology
from deploy.topology import REPO
from kernel.errors import PROBLEM_CONTENT_TYPE
from tests.conftest import encode
from tests.e2e.conftest import gateway_cli, json_lines
from tests.labels import CATS
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]
NewKey = Callable[[str], tuple[str, str]]
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def _edge(topology: Topology) -> httpx.Client:
    return httpx.Client(base_url=topology.plan.edge_url, timeout=60)


def _bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _api_lines(topology: Topology, request_id: str) -> dict[str, list[dict[str, Any]]]:
    """Each api replica's log lines about one request id."""
    replicas = [p.name for p in topology.plan.processes if p.name.startswith("api-")]
    return {
        name: [line for line in json_lines(topology.log(name)) if line.get("request_id") == request_id]
        for name in replicas
    }


def _request_lines(topology: Topology, request_id: str) -> list[dict[str, Any]]:
    """The api's access lines ("request") for one request id, waited for: they are written after the answer."""

    def found() -> list[dict[str, Any]]:
        lines = [line for lines in _api_lines(topology, request_id).values() for line in lines]
        return [line for line in lines if line.get("message") == "request"]

    wait_for(found, 10, f"the api's request line for {request_id}")
    return found()


def test_prometheus_scrapes_every_process_and_loads_the_rules(topology: Topology) -> None:
    assert topology.plan.prometheus_url is not None
    expected = {"traefik", "auth", "api", "models", "prometheus", "alertmanager"}

    def all_up() -> list[dict[str, Any]] | None:
        targets = httpx.get(f"{topology.plan.prometheus_url}/api/v1/targets", timeout=10).json()["data"]
        active = targets["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    wait_for(lambda: all_up() is not None, 60, "every Prometheus target up", interval_s=1)
    active = all_up() or []
    assert {t["labels"]["job"] for t in active} == expected
    assert len([t for t in active if t["labels"]["job"] == "api"]) == 2
    groups = httpx.get(f"{topology.plan.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"CvTargetDown", "CvServiceDown", "CvNoJobWorker"} <= names
    status = httpx.get(f"{topology.plan.alertmanager_url}/api/v2/status", timeout=10).json()
    assert status["cluster"]["status"] in ("disabled", "ready")


def test_no_key_is_401_problem_json(topology: Topology) -> None:
    with _edge(topology) as edge:
        response = edge.get("/api/v1/models")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["request_id"] == response.headers["X-Request-ID"]


def test_unknown_and_revoked_keys(topology: Topology, new_key: NewKey) -> None:
    key, prefix = new_key("pro")
    with _edge(topology) as edge:
        assert edge.get("/api/v1/models", headers=_bearer(key)).status_code == 200
        assert edge.get("/api/v1/models", headers=_bearer(key[:-2] + "xx")).status_code == 401
        assert f"revoked {prefix}" in gateway_cli(topology, "revoke", prefix)
        # Announced to the auth service's key cache (ADR 0013): refused once the announcement is processed.
        refused = lambda: edge.get("/api/v1/models", headers=_bearer(key)).status_code == 403  # noqa: E731
        wait_for(refused, 5, "the revoked key's refusal at the edge")
        assert any(prefix in row and "revoked" in row for row in gateway_cli(topology, "list").splitlines())
        response = edge.get("/api/v1/models", headers=_bearer(key))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert "revoked" in response.json()["detail"]


def test_free_tier_is_limited_while_pro_goes_on(topology: Topology, new_key: NewKey) -> None:
    free, _ = new_key("free")  # 2 requests/s, burst 5 (gateway/tiers.yaml)
    pro, _ = new_key("pro")
    with _edge(topology) as edge:
        answers = [edge.get("/api/v1/models", headers=_bearer(free)) for _ in range(10)]
        pro_answers = [edge.get("/api/v1/models", headers=_bearer(pro)) for _ in range(10)]
    statuses = [r.status_code for r in answers]
    assert statuses[:5] == [200] * 5 and statuses.count(429) >= 3, statuses
    for response in answers:  # every answer says where the client stands
        assert all(name in response.headers for name in RATE_HEADERS), response.headers
        assert response.headers["RateLimit-Limit"] == "5"
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert int(refused.headers["Retry-After"]) >= 1 and refused.headers["RateLimit-Remaining"] == "0"
    assert [r.status_code for r in pro_answers] == [200] * 10
    assert [r.headers["RateLimit-Limit"] for r in pro_answers] == ["40"] * 10


def test_a_tier_may_not_call_routes_outside_it(topology: Topology, new_key: NewKey) -> None:
    free, _ = new_key("free")  # free: classify, detect, health, models
    with _edge(topology) as edge:
        response = edge.post("/api/v1/search", headers=_bearer(free), files={"image": ("x.jpg", b"x", "image/jpeg")})
    assert response.status_code == 403 and "tier does not allow" in response.json()["detail"]


def test_the_tiers_image_limit_is_enforced_by_the_api(topology: Topology, new_key: NewKey) -> None:
    big = encode(np.random.default_rng(0).integers(0, 255, (1400, 1400, 3), dtype=np.uint8), "PNG")
    assert 5 * 2**20 < len(big) < 20 * 2**20  # over free's 5 MiB, under pro's 20 MiB
    files = {"image": ("big.png", big, "image/png")}
    free, _ = new_key("free")
    pro, _ = new_key("pro")
    with _edge(topology) as edge:
        # A caller's own tier headers are dropped at the edge.
        forged = _bearer(free, **{"X-Tier": "enterprise", "X-Tier-Max-Image-Bytes": str(2**30)})
        refused = edge.post("/api/v1/classify", headers=forged, files=files)
        answered = edge.post("/api/v1/classify", headers=_bearer(pro), files=files)
    assert refused.status_code == 413 and "5242880 bytes" in refused.json()["detail"]
    assert answered.status_code == 200, answered.text
    assert answered.json()["image"]["width"] == 1400


def test_request_id_and_identity_reach_the_api_logs(
    topology: Topology, new_key: NewKey, photos: dict[str, bytes]
) -> None:
    key, prefix = new_key("pro")
    request_id = f"e2e-{uuid.uuid4().hex}"
    with _edge(topology) as edge:
        forged = _bearer(key, **{"X-Request-ID": request_id, "X-Client-Id": "somebody-else", "X-Tier": "enterprise"})
        response = edge.post(
            "/api/v1/classify", headers=forged, files={"image": ("cat.jpg", photos["chelsea.jpg"], "image/jpeg")}
        )
        generated = edge.get("/api/v1/models", headers=_bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id == response.json()["request_id"]
    access = _request_lines(topology, request_id)
    assert len(access) == 1, access
    assert access[0]["client_id"] == prefix and access[0]["tier"] == "pro" and access[0]["status"] == 200
    # Without a caller's id the gateway makes one, and it is the one the api logs.
    made = generated.headers["X-Request-ID"]
    assert len(made) == 32
    assert _request_lines(topology, made)
    # Traefik's JSON access log carries it too (also written after the answer).
    access_log = topology.log_dir / "access.log"
    wait_for(
        lambda: any(line.get("request_X-Request-Id") == request_id for line in json_lines(access_log.read_text())),
        10,
        "Traefik's access line",
    )


def test_openapi_is_public_and_metrics_are_not_published(topology: Topology) -> None:
    with _edge(topology) as edge:
        assert edge.get("/").status_code == 200
        spec = edge.get("/api/v1/openapi.json")
        assert spec.status_code == 200 and "/classify" in spec.json()["paths"]
        docs = edge.get("/docs.json")
        assert docs.status_code == 200 and docs.json()["info"]["title"] == "Computer-vision API"
        assert "bearerAuth" in docs.json()["components"]["securitySchemes"]  # Swagger's Authorize works here
        assert edge.get("/ui").status_code == 200 and edge.get("/ui/ui.js").status_code == 200
        assert edge.get("/api/v1/metrics").status_code == 404
    traefik_metrics = httpx.get(f"{topology.plan.internal_url}/metrics", timeout=10).text
    assert 'traefik_service_requests_total{code="200"' in traefik_metrics


def test_a_caller_that_reaches_a_replica_directly_cannot_claim_a_tier(topology: Topology) -> None:
    """Past Traefik the identity headers are not enough: the auth service signs them and the api checks."""
    replica = topology.plan.get("api-2").url
    forged = {"X-Client-Id": "somebody", "X-Tier": "enterprise", "X-Tier-Max-Image-Bytes": "999999999"}
    response = httpx.get(f"{replica}/api/v1/models", headers=forged, timeout=10)
    assert response.status_code == 401 and response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert response.json()["type"].endswith("gateway-signature-invalid")
    assert httpx.get(f"{replica}/livez", timeout=10).status_code == 200  # Traefik's health check
    assert httpx.get(f"{replica}/api/v1/health", timeout=10).status_code == 200


def _served_by(topology: Topology, request_ids: list[str]) -> Counter[str]:
    served: Counter[str] = Counter()
    wanted = set(request_ids)
    for name, lines in ((n, json_lines(topology.log(n))) for n in ("api-1", "api-2")):
        served[name] += sum(
            1 for line in lines if line.get("message") == "request" and line.get("request_id") in wanted
        )
    return served


def test_load_is_spread_over_both_replicas(topology: Topology, new_key: NewKey) -> None:
    key, _ = new_key("enterprise")
    ids = [f"spread-{i}-{uuid.uuid4().hex[:8]}" for i in range(40)]
    with _edge(topology) as edge:
        statuses = [edge.get("/api/v1/models", headers=_bearer(key, **{"X-Request-ID": i})).status_code for i in ids]
    assert statuses == [200] * len(ids)
    wait_for(lambda: _served_by(topology, ids).total() == len(ids), 10, "a request line for each id")
    served = _served_by(topology, ids)
    assert served["api-1"] >= 10 and served["api-2"] >= 10, served  # round robin: about 20 each


def test_fifty_clients_on_one_key_are_admitted_within_one_percent(topology: Topology, new_key: NewKey) -> None:
    """50 concurrent clients for 10 s through Traefik on one pro key (20/s, burst 40): admitted = 40 + 20 t."""
    key, prefix = new_key("pro")
    clients, duration_s = 50, 10.0
    counts: list[Counter[int]] = [Counter() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        with httpx.Client(base_url=topology.plan.edge_url, timeout=30) as edge:
            barrier.wait()
            while time.monotonic() < deadline[0]:
                response = edge.get("/api/v1/models", headers=_bearer(key))
                counts[i][response.status_code] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + duration_s
    barrier.wait()
    for thread in threads:
        thread.join()
    total: Counter[int] = sum(counts, Counter())
    assert set(total) <= {200, 429}, total
    # The window the limiter saw, on its own clock (Redis TIME, logged with each admission): its first and last
    # admission on this key. The log lines' own times lag the decisions by however long the auth process took to
    # write them, which a loaded machine stretches unevenly.
    admitted = [
        line["decided_at_us"] / 1e6
        for line in json_lines(topology.log("auth"))
        if line.get("message") == "admitted" and line.get("client_id") == prefix
    ]
    assert len(admitted) == total[200]
    window_s = max(admitted) - min(admitted)
    expected = 40 + 20 * window_s
    print(
        f"limit accuracy: admitted {total[200]} of {sum(total.values())} in {window_s:.3f} s; expected {expected:.1f}"
    )
    assert sum(total.values()) > 2 * expected, "the clients must offer more than the tier allows"
    assert abs(total[200] - expected) <= 0.01 * expected, (total, expected)


def test_a_batch_job_runs_on_the_worker_through_the_edge(
    topology: Topology, new_key: NewKey, photos: dict[str, bytes], tmp_path: Path
) -> None:
    """The submit CLI with a key: the api replica queues it in Redis, the Celery worker calls the model services."""
    key, _ = new_key("pro")
    for i in range(3):
        for name, data in photos.items():
            (tmp_path / f"{i}-{name}").write_bytes(data)
    out = tmp_path / "items.jsonl"
    command = [sys.executable, "-m", "services.jobs.submit", str(tmp_path), "--task", "classify", "--top-k", "1"]
    done = subprocess.run(
        [*command, "--url", topology.plan.edge_url, "--wait", "--interval", "0.5", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "CV_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "succeeded: 12 images (12 succeeded)" in done.stdout
    items = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {item["filename"]: item for item in items}
    top = by_name["0-chelsea.jpg"]["result"]["predictions"][0]["label"]
    assert top in CATS, top
    with _edge(topology) as edge:  # the api's health sees the worker's heartbeat in PostgreSQL
        jobs = edge.get("/api/v1/health", headers=_bearer(key)).json()["data"]["jobs"]
    assert jobs["status"] == "ok" and jobs["workers"] == 1 and jobs["active_jobs"] == 0, jobs


def test_the_sdk_waits_out_a_429_through_the_edge_and_succeeds(
    topology: Topology, new_key: NewKey, photos: dict[str, bytes]
) -> None:
    from cv_client import Client, RetryPolicy

    free, _ = new_key("free")  # 2 requests/s, burst 5: the sixth request at once is refused
    with _edge(topology) as edge:
        drained = [edge.get("/api/v1/models", headers=_bearer(free)).status_code for _ in range(6)]
    assert 429 in drained, drained
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with Client(topology.plan.edge_url, api_key=free, retry=RetryPolicy(max_retries=5), sleep=sleep) as client:
        result = client.classify(photos["chelsea.jpg"], top_k=3)
    assert result.top1 is not None and result.top1.label in CATS
    assert waits and all(w >= 1 for w in waits[:1]), waits  # it waited the edge's Retry-After, then succeeded


def test_a_killed_replica_is_taken_out_and_traffic_goes_on(topology: Topology, new_key: NewKey) -> None:
    """Steady traffic; api-1 is SIGKILLed; Traefik's health check takes it out; after that nothing fails.

    A request api-1 was answering when it died may fail (502): what was in flight on a crashed process is lost;
    clients retry idempotent calls. Everything sent after the health check took it out must succeed.
    """
    key, _ = new_key("enterprise")
    victim = topology.plan.get("api-1")
    answers: list[tuple[float, float, str, int]] = []  # (sent, answered, request id, status)
    stop = threading.Event()

    def traffic() -> None:
        with _edge(topology) as edge:
            while not stop.is_set():
                request_id, sent = f"kill-{uuid.uuid4().hex}", time.monotonic()
                status = _status(edge, key, request_id)
                answers.append((sent, time.monotonic(), request_id, status))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()  # before the signal: a request may fail while kill() waits for the corpse
        topology.kill("api-1")
        while not _server_down(topology, victim.url):
            assert time.monotonic() - killed_at < 15, "the health check never took the replica out"
            time.sleep(0.05)
        removed_at = time.monotonic()
        time.sleep(2.0)
    finally:
        stop.set()
        sender.join()
    before = Counter(status for _, answered, _, status in answers if answered < killed_at)
    # In flight at the kill (a crashed replica loses what it was answering) or sent before Traefik took it out.
    around = Counter(status for sent, answered, _, status in answers if answered >= killed_at and sent < removed_at)
    after = [(request_id, status) for sent, _, request_id, status in answers if sent >= removed_at]
    print(
        f"replica kill: taken out {removed_at - killed_at:.2f} s after the kill; answers before {dict(before)}, "
        f"in flight or sent until taken out {dict(around)}, after {dict(Counter(s for _, s in after))}"
    )
    assert set(before) == {200} and len(after) >= 20
    assert all(status == 200 for _, status in after), after
    sent_after = [request_id for request_id, _ in after]
    wait_for(lambda: _served_by(topology, sent_after).total() == len(after), 10, "a request line for each id")
    assert _served_by(topology, sent_after) == Counter({"api-2": len(after)})
    # Prometheus sees the dead replica; after the rule's `for: 1m` Alertmanager holds CvTargetDown for it (not for
    # api-2), and CvServiceDown stays quiet: one replica of the api still answers.
    instance = victim.url.removeprefix("http://")

    def alerts() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{topology.plan.alertmanager_url}/api/v2/alerts", timeout=10).json()
        return found

    def target_down() -> list[str]:
        return [a["labels"]["instance"] for a in alerts() if a["labels"].get("alertname") == "CvTargetDown"]

    wait_for(lambda: instance in target_down(), 150, "CvTargetDown for the killed replica", interval_s=2)
    print(f"replica kill: CvTargetDown in Alertmanager {time.monotonic() - killed_at:.0f} s after the kill")
    assert target_down() == [instance]
    assert not [a for a in alerts() if a["labels"].get("alertname") == "CvServiceDown"]


def _status(edge: httpx.Client, key: str, request_id: str | None = None) -> int:
    headers = _bearer(key, **({"X-Request-ID": request_id} if request_id else {}))
    try:
        return edge.get("/api/v1/models", headers=headers).status_code
    except httpx.HTTPError:
        return -1


def _server_down(topology: Topology, url: str) -> bool:
    metrics = httpx.get(f"{topology.plan.internal_url}/metrics", timeout=5).text
    return f'traefik_service_server_up{{service="api@file",url="{url}"}} 0' in metrics
