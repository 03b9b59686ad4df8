"""``python -m services.db migrate|downgrade|current|check|sql|revision`` on ``CV_DATABASE_URL`` (or SQLite)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alembic import command

from kernel.db import migrate
from kernel.db.session import create_db_engine
from services.config import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("migrate", help="apply migrations (default: up to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = commands.add_parser("downgrade", help="revert migrations down to a revision ('base': all)")
    down.add_argument("revision")
    commands.add_parser("current", help="print the database's revision and the newest one")
    commands.add_parser("check", help="exit 1 when the tables and the migrated database differ")
    commands.add_parser("sql", help="print the migrations' SQL for the configured database (no connection)")
    new = commands.add_parser("revision", help="write a migration from the difference (developers)")
    new.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.command == "sql":
        migrate.upgrade_sql(settings.sqlalchemy_url)
        return 0
    engine = create_db_engine(settings.sqlalchemy_url, connect_timeout_s=settings.db_connect_timeout_s)
    where = engine.url.render_as_string(hide_password=True)
    if args.command == "migrate":
        migrate.upgrade(engine, args.revision)
        print(f"{where}: at {migrate.current_revision(engine)}")
    elif args.command == "downgrade":
        migrate.downgrade(engine, args.revision)
        print(f"{where}: at {migrate.current_revision(engine)}")
    elif args.command == "current":
        print(f"{where}: at {migrate.current_revision(engine)} (head {migrate.head_revision()})")
    elif args.command == "check":
        differences = migrate.drift(engine)
        for difference in differences:
            print(difference)
        return 1 if differences else 0
    else:
        with engine.begin() as connection:
            command.revision(migrate.alembic_config(connection), message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
