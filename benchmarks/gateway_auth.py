"""The auth service alone (``GET /auth``, what Traefik's ForwardAuth waits for): its variants side by side, and how
long a revocation takes to reach every replica.

Starts several ``python -m gateway serve`` processes at once on the machine's PostgreSQL (a fresh schema) and Redis
(a fresh key namespace), one per variant (key cache off/on, uvicorn's HTTP parser), and times ``GET /auth``
round-robin over them, so the machine's noise falls on every variant alike. Then, with two cached replicas, it
revokes a key through ``python -m gateway keys revoke`` (in process, as the CLI runs) and times until both refuse it.
Also times the decision's parts in this process. Writes benchmarks/reports/gateway_auth.md and .json.

``python benchmarks/gateway_auth.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
# Run as a script, benchmarks/ comes first on the path, and benchmarks/gateway.py would shadow the gateway package.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks")]

from benchmarks.common import stats, table, timed  # noqa: E402

log = logging.getLogger("benchmarks.gateway_auth")
REPORTS = REPO / "benchmarks" / "reports"
URI = "/api/v1/classify"


def variants(extra_site: str | None) -> dict[str, dict[str, str]]:
    """Each variant's extra environment (``CV_GATEWAY_*``); ``extra_site`` holds httptools/uvloop when given."""
    found = {
        "no cache (every request reads PostgreSQL)": {"CV_GATEWAY_KEY_CACHE_ENTRIES": "0"},
        "key cache, decided in a worker thread": {"CV_GATEWAY_AUTH_INLINE": "false"},
        "key cache, decided on the event loop (default)": {},
    }
    if extra_site:
        found["key cache, event loop, httptools + uvloop"] = {"PYTHONPATH": f"{REPO}{os.pathsep}{extra_site}"}
    return found


@contextlib.contextmanager
def servers(env: dict[str, str], named: dict[str, dict[str, str]], first_port: int) -> Iterator[dict[str, str]]:
    """One auth process per variant; yields name -> base URL."""
    procs, urls = [], {}
    try:
        for port, (name, extra) in enumerate(named.items(), start=first_port):
            full = {**os.environ, "PYTHONPATH": str(REPO), **env, "CV_GATEWAY_PORT": str(port), **extra}
            procs.append(subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=full))
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            _await_live(url)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _await_live(url: str, timeout_s: float = 60) -> None:
    """Until ``/health`` says 200 and the key cache (where there is one) is subscribed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            body = httpx.get(f"{url}/health").json()
            if body.get("status") == "ok" and body.get("key_cache", "live") == "live":
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def interleaved(urls: dict[str, str], headers: dict[str, str], calls: int) -> dict[str, dict[str, float]]:
    """``GET /auth`` round-robin over the variants, one keep-alive connection each."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(base_url=url) for name, url in urls.items()}
    try:
        for i in range(calls + 10):
            for name, client in clients.items():
                t0 = time.perf_counter()
                client.get("/auth", headers=headers).raise_for_status()
                if i >= 10:
                    samples[name].append((time.perf_counter() - t0) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return {name: stats(values) for name, values in samples.items()}


def revocation(env: dict[str, str], first_port: int, rounds: int, tier: str) -> dict[str, Any]:
    """ms from ``keys revoke`` returning to both of two cached replicas answering 403 (polled every 1 ms)."""
    from gateway.__main__ import main as cli
    from gateway.config import get_gateway_settings

    os.environ.update({k: v for k, v in env.items() if k.startswith("CV_GATEWAY_")})
    get_gateway_settings.cache_clear()
    replicas: dict[str, dict[str, str]] = {"replica-1": {}, "replica-2": {}}
    seconds: list[float] = []
    with servers(env, replicas, first_port) as urls, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(base_url=url)) for url in urls.values()]
        for _ in range(rounds):
            key, prefix = _cli_create(cli, tier)
            forward = _forward(key)
            for client in clients:  # cached on both
                client.get("/auth", headers=forward).raise_for_status()
            with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):
                assert cli(["keys", "revoke", prefix]) == 0
            started = time.perf_counter()
            for client in clients:
                while client.get("/auth", headers=forward).status_code != 403:
                    time.sleep(0.001)
            seconds.append((time.perf_counter() - started) * 1000)
    return {**stats(seconds), "max": max(seconds)}


def _cli_create(cli: Callable[[list[str]], int], tier: str) -> tuple[str, str]:
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(None):
        assert cli(["keys", "create", "--tier", tier, "--name", "bench"]) == 0
    key = out.getvalue().splitlines()[-1]
    return key, key.split("_")[1]


def _forward(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-Forwarded-Uri": URI, "X-Forwarded-Method": "POST"}


def parts(env: dict[str, str], key: str, calls: int) -> dict[str, dict[str, float]]:
    """The decision's parts, timed in this process against the same PostgreSQL and Redis."""
    from gateway.app import build_gateway
    from gateway.config import GatewaySettings
    from gateway.keycache import CachedKeyStore
    from gateway.keys import hash_secret, parse_key
    from kernel.signing import sign

    settings = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    gateway = build_gateway(settings)
    assert isinstance(gateway.keys, CachedKeyStore)
    while not gateway.keys.cache.live:
        time.sleep(0.01)
    store, tier = gateway.keys.store, gateway.tiers.get("enterprise")
    secret = parse_key(key).secret
    headers = {k.lower(): v for k, v in _forward(key).items()}
    identity = {"x-client-id": "c", "x-tier": "enterprise"}
    signing = env["CV_GATEWAY_SIGNING_SECRET"]
    result = {
        "key lookup, PostgreSQL (a cache miss)": timed(lambda: store.lookup(parse_key(key).prefix), calls),
        "key lookup, cache hit (incl. HMAC check)": timed(lambda: gateway.keys.authenticate(key), calls),
        "HMAC-SHA256 of the secret": timed(lambda: hash_secret(secret, hash_key=store.hash_key), calls),
        "limiter, one EVALSHA round trip (Redis)": timed(lambda: gateway.limiter.check("bench", tier), calls),
        "signing the forwarded identity": timed(
            lambda: sign(signing, method="POST", uri=URI, request_id="r", headers=identity), calls
        ),
        "whole decision, cache hit (Gateway.decide)": timed(lambda: gateway.decide(headers, URI), calls),
    }
    result["announcement: PUBLISH to this process' cache dropping it"] = timed(
        lambda: _announce_and_wait(gateway.keys, settings), calls
    )
    gateway.keys.invalidations.stop()  # type: ignore[union-attr]
    return result


def _announce_and_wait(keys: Any, settings: Any) -> None:
    import redis

    from gateway.keycache import KeyEvents

    global _events
    if _events is None:
        _events = KeyEvents(redis.Redis.from_url(settings.redis_url), settings.key_channel)
    keys.cache.put("announced", None, keys.cache.generation)
    _events.publish("announced")
    while keys.cache.get("announced") is not None:
        pass


_events: Any = None


def render(r: dict[str, Any]) -> str:
    http = r["http"]
    base = http["no cache (every request reads PostgreSQL)"]["p50"]
    rows = [[name, s["n"], s["p50"], s["p99"], f"{s['p50'] - base:+.2f}"] for name, s in http.items()]
    part_rows = [[name, s["n"], f"{s['p50']:.3f}", f"{s['p99']:.3f}"] for name, s in r["parts"].items()]
    rev = r["revocation"]
    return f"""# The auth service alone: `GET /auth` by variant, and a revocation's way to every replica

Generated by `python benchmarks/gateway_auth.py{" --quick" if r["quick"] else ""}` on {r["date"]}, on a machine shared
with other work (load average {r["load"]}): every variant ran at once and was called round-robin, so compare them
within this table, not with other runs.

## `GET /auth` over HTTP (one keep-alive connection per variant, sequential), ms

{table(["variant", "n", "p50", "p99", "p50 vs no cache"], rows)}

## The decision's parts (in process, same PostgreSQL and Redis), ms

{table(["part", "n", "p50", "p99"], part_rows)}

## Revocation: `python -m gateway keys revoke` to both of two cached replicas answering 403

{rev["n"]} revocations: p50 **{rev["p50"]:.1f} ms**, p99 {rev["p99"]:.1f} ms, max {rev["max"]:.1f} ms (from the CLI's
return, polling each replica in turn; the announcement is one Redis `PUBLISH` the CLI makes after its commit).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke run")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--port", type=int, default=43210, help="first of the ports the auth processes listen on")
    parser.add_argument("--extra-site", help="a folder with httptools and uvloop, for that variant")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    calls, rounds = (100, 10) if args.quick else (400, 30)
    from gateway.keys import KeyStore
    from kernel.db import migrate
    from kernel.db.session import create_db_engine
    from tests.integration.conftest import REDIS_URL, fresh_schema, postgres_url, redis_keys

    with fresh_schema() as schema, redis_keys(f"benchauth{uuid.uuid4().hex[:8]}:") as prefix:
        env = {
            "CV_GATEWAY_DATABASE_URL": postgres_url(int(os.environ.get("PGPORT", "5432")), schema),
            "CV_GATEWAY_REDIS_URL": REDIS_URL,
            "CV_GATEWAY_REDIS_PREFIX": prefix,
            "CV_GATEWAY_KEY_HASH_SECRET": secrets.token_urlsafe(32),
            "CV_GATEWAY_SIGNING_SECRET": secrets.token_urlsafe(32),
            "CV_GATEWAY_LOG_LEVEL": "WARNING",
            # The tiers as shipped but for enterprise's rate, which a fast enough /auth passes in this benchmark
            # (200 a second): a refusal is as much work as an admission, but a 429 would end the run.
            "CV_GATEWAY_TIERS_FILE": str(_unlimited_tiers()),
        }
        os.environ.update(env)
        engine = create_db_engine(create_settings_url())
        migrate.upgrade(engine)
        key, _ = KeyStore(engine, hash_key=env["CV_GATEWAY_KEY_HASH_SECRET"].encode()).create(
            name="bench", tier="enterprise"
        )
        with servers(env, variants(args.extra_site), args.port) as urls:
            http = interleaved(urls, _forward(key), calls)
        results = {
            "http": http,
            "parts": parts(env, key, calls),
            "revocation": revocation(env, args.port + 10, rounds, "enterprise"),
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "load": os.getloadavg()[0],
        }
        engine.dispose()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway_auth.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gateway_auth.md").write_text(render(results))
    log.info("wrote %s", args.out / "gateway_auth.md")
    return 0


def _unlimited_tiers() -> Path:
    from gateway.config import GatewaySettings

    tiers = yaml.safe_load(GatewaySettings(_env_file=None).tiers_file.read_text())  # type: ignore[call-arg]
    tiers["enterprise"].update(rps=1_000_000, burst=1_000_000)
    path = Path(tempfile.mkdtemp(prefix="cv-bench-tiers-")) / "tiers.yaml"
    path.write_text(yaml.safe_dump(tiers))
    return path


def create_settings_url() -> str:
    from gateway.config import GatewaySettings

    return GatewaySettings(_env_file=None).sqlalchemy_url  # type: ignore[call-arg]


if __name__ == "__main__":
    sys.exit(main())
