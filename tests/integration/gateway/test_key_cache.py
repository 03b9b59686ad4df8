"""The key cache on real PostgreSQL and Redis: two auth replicas, a revocation or tier change announced by the key
CLI reaches both, and a replica that lost its subscription flushes what it may have kept past a missed message."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gateway import keys as keys_module
from gateway.__main__ import main
from gateway.app import Gateway, build_gateway
from gateway.config import GatewaySettings, get_gateway_settings
from gateway.keycache import CachedKeyStore
from gateway.keys import KeyStore
from kernel.db import migrate
from kernel.db.session import create_db_engine
from tests.integration.conftest import REDIS_URL, postgres_url
from tests.integration.proxy import TcpProxy
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

URI = "/api/v1/classify"
HASH_SECRET = "integration-hash-secret"


@pytest.fixture
def settings(pg_schema: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewaySettings]:
    """One topology's gateway settings; the same in the environment, for the key CLI."""
    values = {
        "database_url": postgres_url(5432, pg_schema),
        "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix,
        "key_hash_secret": HASH_SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(f"CV_GATEWAY_{name.upper()}", value)
    get_gateway_settings.cache_clear()
    settings = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    engine = create_db_engine(settings.sqlalchemy_url)
    migrate.upgrade(engine)
    engine.dispose()
    yield settings
    get_gateway_settings.cache_clear()


def _replica(settings: GatewaySettings) -> Gateway:
    gateway = build_gateway(settings)
    keys = gateway.keys
    assert isinstance(keys, CachedKeyStore)
    _wait(lambda: keys.cache.live, "the key cache's subscription")
    return gateway


@pytest.fixture
def replicas(settings: GatewaySettings) -> Iterator[list[Gateway]]:
    gateways = [_replica(settings), _replica(settings)]
    yield gateways
    for gateway in gateways:
        _stop(gateway)


def _stop(gateway: Gateway) -> None:
    keys = gateway.keys
    assert isinstance(keys, CachedKeyStore) and keys.invalidations is not None
    keys.invalidations.stop()


def _wait(condition: Callable[[], object], what: str = "the replicas to agree") -> None:
    """Until ``condition()`` holds; 10 s is a bound on correctness, not a speed test (benchmarks/gateway_auth.py)."""
    wait_for(condition, 10, what, interval_s=0.002)


def _status(gateway: Gateway, key: str) -> int:
    return gateway.decide({"authorization": f"Bearer {key}"}, URI).status


def _create(settings: GatewaySettings, tier: str = "pro") -> tuple[str, str]:
    store = KeyStore(create_db_engine(settings.sqlalchemy_url), hash_key=HASH_SECRET.encode())
    key, record = store.create(name="cache", tier=tier)
    return key, record.prefix


def test_a_revocation_by_the_cli_reaches_every_replica(
    settings: GatewaySettings, replicas: list[Gateway], capsys: pytest.CaptureFixture[str]
) -> None:
    key, prefix = _create(settings)
    for gateway in replicas:
        assert [_status(gateway, key) for _ in range(3)] == [200, 200, 200]
        assert isinstance(gateway.keys, CachedKeyStore) and len(gateway.keys.cache) == 1  # served from the cache
    assert main(["keys", "revoke", prefix]) == 0
    assert "announced to 2 auth replica(s)" in capsys.readouterr().err
    for gateway in replicas:
        _wait(lambda gateway=gateway: _status(gateway, key) == 403)  # type: ignore[misc]
        assert _status(gateway, key) == 403


def test_a_tier_change_reaches_every_replica(settings: GatewaySettings, replicas: list[Gateway]) -> None:
    key, prefix = _create(settings, tier="pro")
    tier_of = lambda gateway: gateway.decide({"authorization": f"Bearer {key}"}, URI).headers.get("x-tier")  # noqa: E731
    assert [tier_of(gateway) for gateway in replicas] == ["pro", "pro"]
    assert main(["keys", "tier", prefix, "enterprise"]) == 0
    for gateway in replicas:
        _wait(lambda gateway=gateway: tier_of(gateway) == "enterprise")  # type: ignore[misc]


def test_an_unknown_key_is_cached_as_unknown_until_it_is_created(
    replicas: list[Gateway], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = replicas[0]
    assert isinstance(gateway.keys, CachedKeyStore)
    key = "cvk_0123456789ab_the-secret"
    assert _status(gateway, key) == 401
    assert gateway.keys.cache.get("0123456789ab") is not None  # the negative entry
    monkeypatch.setattr(keys_module, "generate_key", lambda: (key, keys_module.parse_key(key)))
    assert main(["keys", "create", "--tier", "pro", "--name", "cache"]) == 0  # announced: the prefix is dropped
    assert capsys.readouterr().out.splitlines()[-1] == key
    _wait(lambda: _status(gateway, key) == 200)


def test_a_lost_subscription_flushes_the_cache(settings: GatewaySettings, redis_proxy: TcpProxy) -> None:
    through_proxy = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_proxy.port}/0"})
    gateway = _replica(through_proxy)
    keys = gateway.keys
    assert isinstance(keys, CachedKeyStore) and keys.invalidations is not None
    try:
        key, prefix = _create(settings)
        assert _status(gateway, key) == 200
        # A revocation whose announcement this replica misses (not announced at all): the cache still admits it.
        KeyStore(create_db_engine(settings.sqlalchemy_url), hash_key=HASH_SECRET.encode()).revoke(prefix=prefix)
        assert _status(gateway, key) == 200
        subscriptions = keys.invalidations.subscriptions
        redis_proxy.stop()  # the subscription's connection is cut ...
        redis_proxy.start()  # ... and Redis is back: the replica resubscribes and flushes
        _wait(lambda: keys.invalidations.subscriptions > subscriptions)  # type: ignore[union-attr]
        assert _status(gateway, key) == 403
    finally:
        _stop(gateway)


def test_while_unsubscribed_every_lookup_reads_the_database(settings: GatewaySettings, redis_proxy: TcpProxy) -> None:
    through_proxy = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{redis_proxy.port}/0"})
    gateway = _replica(through_proxy)
    keys = gateway.keys
    assert isinstance(keys, CachedKeyStore)
    gateway.fail_open = True  # the limiter goes through the cut proxy too
    try:
        key, prefix = _create(settings)
        assert _status(gateway, key) == 200
        redis_proxy.stop()
        _wait(lambda: not keys.cache.live)
        assert len(keys.cache) == 0
        KeyStore(create_db_engine(settings.sqlalchemy_url), hash_key=HASH_SECRET.encode()).revoke(prefix=prefix)
        assert _status(gateway, key) == 403  # read from the database: nothing was announced, nothing was cached
        assert gateway.health()[1]["key_cache"] == "off"
    finally:
        redis_proxy.start()
        _stop(gateway)
