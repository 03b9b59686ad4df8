"""Command line: ``python -m gateway keys create --tier pro --name NAME``, ``keys list|revoke PREFIX``,
``keys tier PREFIX TIER``, ``serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from gateway.config import GatewaySettings, get_gateway_settings
from gateway.keys import KeyStore
from gateway.tiers import Tiers


def _store(settings: GatewaySettings) -> KeyStore:
    from kernel.db import migrate
    from kernel.db.session import create_db_engine

    engine = create_db_engine(settings.sqlalchemy_url)
    if settings.environment == "local":  # production migrates with `python -m services.db migrate`
        migrate.upgrade(engine)
    hash_key = settings.key_hash_secret.get_secret_value().encode()
    return KeyStore(engine, hash_key=hash_key, on_change=_announcer(settings))


def _announcer(settings: GatewaySettings) -> Callable[[str], None] | None:
    """Publishes a changed key to every auth replica's cache (gateway/keycache.py); None without Redis."""
    if not settings.redis_url:
        return None
    import redis

    from gateway.keycache import KeyEvents

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    events = KeyEvents(client, settings.key_channel)

    def announce(prefix: str) -> None:
        try:
            replicas = events.publish(prefix)
        except redis.RedisError as error:
            print(
                f"warning: could not announce the change on Redis ({error}); auth replicas apply it within"
                f" CV_GATEWAY_KEY_CACHE_TTL_S={settings.key_cache_ttl_s:g}s",
                file=sys.stderr,
            )
            return
        print(f"announced to {replicas} auth replica(s)", file=sys.stderr)

    return announce


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--tier", required=True)
    create.add_argument("--name", required=True)
    keys.add_parser("list", help="list keys (prefixes only)")
    revoke = keys.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    tier = keys.add_parser("tier", help="move a key to another tier")
    tier.add_argument("prefix")
    tier.add_argument("tier")
    commands.add_parser("serve", help="run the ForwardAuth service")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_gateway_settings()
    if args.command == "serve":
        import uvicorn

        from gateway.app import create_app
        from kernel.logging import configure_logging

        configure_logging(settings.log_level, json_logs=True, logger_name="gateway")
        # Traefik writes the access log; the gateway logs its refusals (with the request id).
        app = create_app(settings)
        uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, server_header=False)
        return 0
    store = _store(settings)
    if args.action in ("create", "tier"):
        tiers = Tiers.from_file(settings.tiers_file)
        if args.tier not in tiers.names:
            print(f"unknown tier {args.tier!r}; configured: {', '.join(tiers.names)}", file=sys.stderr)
            return 2
    if args.action == "tier":
        if not store.set_tier(prefix=args.prefix, tier=args.tier):
            print(f"no key with prefix {args.prefix!r}", file=sys.stderr)
            return 1
        print(f"{args.prefix} is now {args.tier}")
        return 0
    if args.action == "create":
        key, record = store.create(name=args.name, tier=args.tier)
        print(f"created {record.prefix} ({record.tier}, {record.name}); the key is shown only now:")
        print(key)
        return 0
    if args.action == "list":
        for record in store.list():
            state = f"revoked {record.revoked_at:%Y-%m-%d}" if record.revoked_at else "active"
            print(f"{record.prefix}\t{record.tier}\t{record.name}\t{record.created_at:%Y-%m-%d}\t{state}")
        return 0
    if not store.revoke(prefix=args.prefix):
        print(f"no key with prefix {args.prefix!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.prefix}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
