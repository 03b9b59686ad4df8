"""What the edge costs: the same requests straight to an api replica and through Traefik + ForwardAuth, in one run.

Starts the production topology on loopback (deploy/), on the machine's PostgreSQL (a fresh schema) and Redis
(a fresh key namespace), with an enterprise key (no 429 at these rates), and measures:

- ``GET /api/v1/models`` and ``POST /api/v1/classify`` sequentially, direct vs through the edge (p50, p99);
- ``POST /api/v1/classify`` at concurrency 8, direct vs through the edge (throughput);
- the auth service's ``GET /auth`` alone, sequentially and at concurrency 16;
- inside the auth service's decision: the key lookup (PostgreSQL on a miss, the key cache on a hit) and the limiter
  (Redis Lua), in process.

Writes benchmarks/reports/gateway.md and gateway.json. ``python benchmarks/gateway.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
# Run as a script, benchmarks/ comes first on the path, and this file would shadow the gateway package.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks")]

from benchmarks.common import machine_facts, photos, stats, table, timed  # noqa: E402

log = logging.getLogger("benchmarks.gateway")
REPORTS = REPO / "benchmarks" / "reports"


async def _concurrent(
    request: Callable[[httpx.AsyncClient], Any], url: str, concurrency: int, total: int
) -> dict[str, Any]:
    todo, statuses = iter(range(total)), Counter[int]()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                response = await request(client)
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {**stats(latencies), "throughput": total / seconds, "statuses": dict(statuses)}


Headers = Callable[[str, str], dict[str, str]]  # (method, path) -> the headers of one request


def _signed_as_the_gateway(topology: Any) -> Headers:
    """What the auth service would add, signed now: direct calls to a replica must carry it (kernel/signing.py)."""
    from kernel.signing import SIGNATURE_HEADER, sign

    secret = topology.plan.gateway_env["CV_GATEWAY_SIGNING_SECRET"]
    identity = {"x-client-id": "bench", "x-tier": "enterprise"}

    def headers(method: str, path: str) -> dict[str, str]:
        request_id = uuid.uuid4().hex
        signature = sign(secret, method=method, uri=path, request_id=request_id, headers=identity)
        return {**identity, "x-request-id": request_id, SIGNATURE_HEADER: signature}

    return headers


def _get(client: httpx.Client, base: str, path: str, headers: Headers) -> None:
    client.get(base + path, headers=headers("GET", path)).raise_for_status()


def _post_image(client: httpx.Client, base: str, path: str, headers: Headers, image: bytes) -> None:
    files = {"image": ("cat.jpg", image, "image/jpeg")}
    client.post(base + path, headers=headers("POST", path), files=files).raise_for_status()


def interleaved(calls: dict[str, Callable[[], object]], n: int, warmup: int = 10) -> dict[str, dict[str, float]]:
    """Each of ``calls`` ``n`` times, round-robin (one of each, then the next round): stats per name."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + n):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                samples[name].append((time.perf_counter() - t0) * 1000)
    return {name: stats(values) for name, values in samples.items()}


def measure(args: argparse.Namespace, topology: Any, store: Any, key: str) -> dict[str, Any]:
    edge, direct = topology.plan.edge_url, topology.plan.get("api-1").url
    auth = topology.plan.get("auth").url
    cat = photos()["chelsea"]
    bearer = {"Authorization": f"Bearer {key}"}
    signed = _signed_as_the_gateway(topology)
    n, n_infer = args.calls, max(20, args.calls // 3)
    results: dict[str, Any] = {"sequential": {}, "concurrent": {}}
    ways: list[tuple[str, str, Headers]] = [("direct", direct, signed), ("edge", edge, lambda _m, _p: bearer)]
    with httpx.Client(timeout=60) as client:
        # Direct and edge alternate call by call, so the shared machine's load falls on both alike.
        for route, n_calls, call in (
            ("models", n, lambda base, headers: _get(client, base, "/api/v1/models", headers)),
            ("classify", n_infer, lambda base, headers: _post_image(client, base, "/api/v1/classify", headers, cat)),
        ):
            timings = interleaved({name: partial(call, base, headers) for name, base, headers in ways}, n_calls)
            results["sequential"].update({f"{route} {name}": s for name, s in timings.items()})
        forward = {**bearer, "X-Forwarded-Uri": "/api/v1/classify", "X-Forwarded-Method": "POST"}
        results["sequential"]["auth alone"] = timed(
            lambda: client.get(f"{auth}/auth", headers=forward).raise_for_status(), n
        )

    def classify_async(headers: Headers) -> Callable[[httpx.AsyncClient], Any]:
        path = "/api/v1/classify"
        return lambda c: c.post(path, headers=headers("POST", path), files={"image": ("cat.jpg", cat, "image/jpeg")})

    for name, base, headers in ways:
        results["concurrent"][f"classify {name} c=8"] = asyncio.run(
            _concurrent(classify_async(headers), base, 8, args.concurrent_calls)
        )
    results["concurrent"]["auth alone c=16"] = asyncio.run(
        _concurrent(lambda c: c.get("/auth", headers=forward), auth, 16, args.calls * 4)
    )
    results["decision"] = decision_parts(topology, store, key, n)
    return results


@contextmanager
def edge_topology(base_port: int = 0, extra_env: dict[str, str] | None = None) -> Iterator[Any]:
    """deploy/'s native production topology on loopback, on this machine's PostgreSQL (a fresh schema) and Redis (a
    fresh key namespace), result cache off and no job worker (fewer processes competing for the cores)."""
    from deploy.runner import Topology
    from deploy.topology import TopologyConfig, plan
    from tests.integration.conftest import REDIS_URL, fresh_schema, postgres_url, redis_keys

    os.environ.setdefault("BENTOML_HOME", str(REPO / ".bentoml"))
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    with fresh_schema() as schema, redis_keys(f"{namespace}:"), tempfile.TemporaryDirectory() as run:
        config = TopologyConfig(
            run_dir=Path(run),
            database_url=postgres_url(int(os.environ.get("PGPORT", "5432")), schema),
            redis_url=REDIS_URL,
            bentoml_home=Path(os.environ["BENTOML_HOME"]),
            key_hash_secret=secrets.token_urlsafe(32),
            namespace=namespace,
            extra_env={"CV_CACHE_ENABLED": "false", **(extra_env or {})},
            worker=False,
            base_port=base_port,
        )
        with Topology(config, plan(config)) as topology:
            yield topology


def key_store(topology: Any) -> Any:
    """The topology's key store, as its auth service opens it (same database, same hash secret)."""
    from gateway.keys import KeyStore
    from kernel.db.session import create_db_engine
    from kernel.db.url import sqlalchemy_database_url

    env = topology.plan.gateway_env
    engine = create_db_engine(sqlalchemy_database_url(env["CV_GATEWAY_DATABASE_URL"], REPO))
    return KeyStore(engine, hash_key=env["CV_GATEWAY_KEY_HASH_SECRET"].encode())


def decision_parts(topology: Any, store: Any, key: str, calls: int) -> dict[str, Any]:
    """The auth service's two lookups, timed in this process against the same PostgreSQL and Redis."""
    from gateway.keycache import CachedKeyStore, KeyCache
    from gateway.limiter import RedisLimiter
    from gateway.tiers import Tiers

    env = topology.plan.gateway_env
    limiter = RedisLimiter.from_url(
        env["CV_GATEWAY_REDIS_URL"], timeout_s=1, prefix=f"{env['CV_GATEWAY_REDIS_PREFIX']}bench:"
    )
    tier = Tiers.from_file(REPO / "gateway" / "tiers.yaml").get("enterprise")
    cache = KeyCache()
    cache.set_live(True)  # no subscriber here: nothing changes the key while this runs
    cached = CachedKeyStore(store, cache)
    return {
        "key lookup, cache miss (PostgreSQL)": timed(lambda: store.authenticate(key), calls),
        "key lookup, cache hit": timed(lambda: cached.authenticate(key), calls),
        "limiter (Redis Lua)": timed(lambda: limiter.check("bench", tier), calls),
    }


def render(r: dict[str, Any]) -> str:
    seq, conc, parts = r["sequential"], r["concurrent"], r["decision"]
    rows = [[name, s["n"], s["p50"], s["p99"]] for name, s in seq.items()]
    overhead = {route: seq[f"{route} edge"]["p50"] - seq[f"{route} direct"]["p50"] for route in ("models", "classify")}
    statuses = {name: {int(code): n for code, n in s["statuses"].items()} for name, s in conc.items()}  # JSON: str keys
    conc_rows = [[name, s["throughput"], s["p50"], s["p99"], statuses[name]] for name, s in conc.items()]
    ratio = conc["classify edge c=8"]["throughput"] / conc["classify direct c=8"]["throughput"]
    part_rows = [[name, s["n"], s["p50"], s["p99"]] for name, s in parts.items()]
    facts = "\n".join(f"- {k}: {v}" for k, v in r["machine"].items())
    refused = statuses["auth alone c=16"].get(429, 0)
    refusals = (
        f"`/auth` alone at concurrency 16 went past the enterprise tier (200/s, burst 400): {refused} answers were 429,"
        " each a full decision all the same."
        if refused
        else "`/auth` alone at concurrency 16 stayed within the enterprise tier (200/s, burst 400): all 200."
    )
    return f"""# The edge's cost: direct to an api replica vs through Traefik + ForwardAuth

Generated by `python benchmarks/gateway.py{" --quick" if r["quick"] else ""}` on {r["machine"]["date"]}. Every process
of the production topology (deploy/) but the batch-job worker runs on this machine: Traefik, the auth service, two
api replicas, three model services, PostgreSQL and Redis. Compare ratios within this run, not across machines.

## Sequential (one request at a time, direct and edge alternating call by call), ms

{table(["request", "n", "p50", "p99"], rows)}

The edge adds **{overhead["models"]:.1f} ms** at p50 to `GET /api/v1/models` and **{overhead["classify"]:.1f} ms**
to `POST /api/v1/classify`: one Traefik hop, one ForwardAuth round trip (the key from the auth service's cache
(ADR 0013) + one Lua script in Redis), the api's signature and tier-limit checks. `/auth` alone (timed on its own,
after the pairs) answers in {seq["auth alone"]["p50"]:.1f} ms; what the edge adds beyond it is Traefik's two proxy hops.
Direct calls carry a signature made as the auth service makes it.

## Concurrent

{table(["request", "req/s", "p50 ms", "p99 ms", "statuses"], conc_rows)}

{refusals}

The concurrent runs are one after the other, not interleaved: under a changing load their ratio is the least
trustworthy number of this report.

Through the edge, classify at concurrency 8 keeps **{ratio:.2f}x** of the direct throughput (the model
services are the bottleneck on 2 cores; the edge competes with them for the same cores).

## Inside one decision (in process, same servers), ms

{table(["part", "n", "p50", "p99"], part_rows)}

Of `/auth`'s {seq["auth alone"]["p50"]:.2f} ms p50, the key lookup takes
{parts["key lookup, cache hit"]["p50"]:.3f} ms from the cache
({parts["key lookup, cache miss (PostgreSQL)"]["p50"]:.2f} ms on a miss, from PostgreSQL) and the limiter
{parts["limiter (Redis Lua)"]["p50"]:.2f} ms; the rest is HTTP and the ASGI app.
`benchmarks/reports/gateway_auth.md` compares the auth service's variants.

## Machine

{facts}
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls: a smoke run")
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument("--base-port", type=int, default=0, help="first of the topology's ports (0: free ports)")
    args = parser.parse_args(argv)
    args.calls = 60 if args.quick else 300
    args.concurrent_calls = 40 if args.quick else 200
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    with edge_topology(args.base_port) as topology:
        store = key_store(topology)
        key, _ = store.create(name="benchmark", tier="enterprise")
        results = measure(args, topology, store, key)
    results.update(machine={**machine_facts(), "load average (1 min) at the end": os.getloadavg()[0]}, quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gateway.md").write_text(render(results))
    log.info("wrote %s", args.out / "gateway.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
