"""The ``dynoscope`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from collections.abc import Sequence

from api.db import create_engine, create_sessionmaker
from api.logs import configure_logging
from api.settings import Mode, Settings, SettingsError

log = logging.getLogger("dynoscope")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    log.info("serving on http://%s:%d with %d worker(s)", host, port, args.workers)
    uvicorn.run(
        "api.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


async def _upgrade(settings: Settings) -> int:
    """The alert store first (it takes over alert tables left in the service's database),
    then the service's schema."""
    from alerts import migrate as alerts_migrate
    from alerts.monitor import open_store
    from api.migrate import upgrade

    engine = create_engine(settings)
    store = open_store(settings.alerts)
    try:
        await alerts_migrate.upgrade(store)
        moved = await alerts_migrate.import_legacy(service=engine, store=store)
        if moved:
            log.info("moved %d alert rows from the service's database to the alert store", moved)
        await upgrade(engine)
    finally:
        await store.dispose()
        await engine.dispose()
    return moved


def _db(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_upgrade(settings))
    log.info("database schema and alert store are up to date")
    return 0


async def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from api.seed import DEMO_EMAIL, seed

    engine = create_engine(settings)
    password = "demo-password" if settings.mode is Mode.DEVELOPMENT else secrets.token_urlsafe(18)
    try:
        added = await seed(
            create_sessionmaker(engine),
            properties=args.properties,
            demo_password=password,
            only_if_empty=args.if_empty,
        )
    finally:
        await engine.dispose()
    if added:
        log.info("seeded %d demo properties owned by %s", added, DEMO_EMAIL)
        if settings.mode is Mode.DEVELOPMENT:
            log.info("demo login: %s / %s", DEMO_EMAIL, password)
    else:
        log.info("database already holds properties; nothing seeded")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynoscope", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the property API")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply migrations").set_defaults(run=_db)

    seed = commands.add_parser("seed", help="load demo data")
    seed.add_argument("--properties", type=int, default=200)
    seed.add_argument("--if-empty", action="store_true", help="only when no property exists")
    seed.set_defaults(run=lambda s, a: asyncio.run(_seed(s, a)))

    # Package hooks: each package registers its own subcommands.
    from alerts.cli import register as register_alerts
    from alerts.receivers_cli import register_receivers
    from alerts.silence_cli import register_silences
    from instrumentation.cli import register as register_instrumentation

    register_instrumentation(commands)
    register_alerts(commands)
    register_receivers(commands)
    register_silences(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dynoscope: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    result: int = args.run(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
