"""The dynoscope command line: the property API, its database and its observability tools.

The help is plain text for a terminal; each subcommand has a one-line description and an
example (``command``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from api import __version__
from api.db import create_engine, create_sessionmaker
from api.logs import configure_logging
from api.settings import Mode, Settings, SettingsError
from api.workers import WorkersError, check_port_free, metrics_directory, workers_environ
from dynoscope.session import adopt_session_token, session_token

if TYPE_CHECKING:
    from alerts.engine.standalone import Pages

log = logging.getLogger("dynoscope")


def _where_to_look(settings: Settings, base: str, token_file: Path | None) -> str:
    """Where a newcomer looks first, as this configuration serves it."""
    places = [f"listings {base}/properties"]
    if settings.docs_enabled:
        places.append(f"every route {base}/docs")
    if settings.telemetry.metrics_enabled and settings.telemetry.metrics_port is None:
        places.append(f"metrics {base}/metrics")
    if token_file is not None:
        # The token itself is never printed: it is in a file only this user can read.
        places.append(f"alerts {base}/alerts (Bearer token in {token_file}, made for this run)")
    elif settings.admin_token is not None:
        places.append(f"alerts {base}/alerts (Bearer ADMIN_TOKEN)")
    else:
        places.append("alerts in this log (set ADMIN_TOKEN for /alerts)")
    places.append("sampled requests: dynoscope traces")
    return "; ".join(places)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM ends ``serve`` through its ``finally`` blocks (the session token and the
    private metrics directory are removed), before uvicorn starts as after: uvicorn shuts
    down gracefully, then raises the signal again with the handler it found, this one."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    telemetry = settings.telemetry
    try:
        if telemetry.metrics_enabled and telemetry.metrics_port is not None:
            check_port_free(telemetry.host, telemetry.metrics_port)
        # Set in this process's environment before uvicorn starts the workers: they build
        # their settings from it, so every worker writes its metrics to the same directory.
        with (
            _sigterm_exits(),
            metrics_directory(
                workers=args.workers,
                configured=telemetry.prometheus_multiproc_dir,
                environ=os.environ,
                metrics_enabled=telemetry.metrics_enabled,
            ) as directory,
            workers_environ(args.workers, os.environ),
        ):
            token_file = getattr(args, "token_file", None)
            log.info(
                "dynoscope %s serving on http://%s:%d with %d worker(s), %s: %s", __version__,
                host, port, args.workers, settings.describe(),
                _where_to_look(settings, f"http://{host}:{port}", token_file),
            )  # fmt: skip
            if directory is not None:
                log.info("metrics of all workers are aggregated in %s", directory)
            uvicorn.run(
                "api.asgi:create",
                factory=True,
                host=host,
                port=port,
                workers=args.workers,
                log_level=settings.log_level.lower(),
                access_log=False,
                # The app believes X-Forwarded-For from TRUSTED_PROXIES only (api/client.py);
                # uvicorn's own default would trust any local process.
                proxy_headers=False,
            )
    except WorkersError as exc:
        print(f"dynoscope serve: refusing to start: {exc}", file=sys.stderr)
        return 2
    return 0


async def _upgrade(settings: Settings) -> int:
    """The alert store first (it takes over alert tables left in the service's database),
    then the service's schema."""
    from alerts.engine.monitor import open_store
    from alerts.store import migrate as alerts_migrate
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


def command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    example: str,
    details: str = "",
) -> argparse.ArgumentParser:
    """A subcommand whose help has a one-line ``summary``, ``details`` and an ``example``.

    Every package registers its subcommands through this, so all help reads alike::

        serve = command(commands, "serve", summary="Run the property API.",
                        example="dynoscope serve --port 8000")
    """
    description = summary if not details else f"{summary}\n\n{details}"
    short = summary.rstrip(".")
    return commands.add_parser(
        name,
        help=short[:1].lower() + short[1:],
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _engine_console(settings: Settings) -> Pages | None:
    """The console beside ``dynoscope alerts run``, on ``CONSOLE_PORT`` with ``ADMIN_TOKEN``
    (for a deployment whose engine runs alone); ``None`` without them."""
    if settings.admin_token is None or settings.console_port is None:
        return None
    if not settings.console_enabled:
        return None
    from dynoscope.pages import engine_console

    token = settings.admin_token.get_secret_value()
    return engine_console(settings, token=token, port=settings.console_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynoscope",
        description="Run the property-listings API and watch its scaling health.",
        epilog="examples:\n"
        "  dynoscope db upgrade\n"
        "  dynoscope serve --workers 2\n"
        "  dynoscope alerts run\n\n"
        "Each command has its own help: dynoscope COMMAND --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dynoscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_service(commands)

    # Package hooks: each package registers its own subcommands.
    from alerts.cli.commands import register as register_alerts
    from alerts.cli.receivers import register_receivers
    from alerts.cli.silences import register_silences
    from alerts.cli.slo import register_slo
    from api.faults.cli import register_faults
    from dashboards.cli import register as register_dashboards
    from instrumentation.cli import register as register_instrumentation
    from ops.cli import register as register_load
    from ops.report_cli import register as register_report

    register_instrumentation(commands, command)
    register_alerts(commands, command, pages_for=_engine_console)
    register_receivers(commands, command)
    register_silences(commands, command)
    register_slo(commands, command)
    register_dashboards(commands, command)
    register_faults(commands, command)
    register_load(commands, command)
    register_report(commands, command)
    return parser


def _register_service(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The service's own commands: serve, db upgrade, seed."""
    serve = command(
        commands,
        "serve",
        summary="Run the property API.",
        details="With several workers their metrics are always aggregated: in the directory\n"
        "PROMETHEUS_MULTIPROC_DIR names, or else in a private one made at start and\n"
        "removed at exit. Settings come from the environment (see the README).",
        example="dynoscope serve --host 0.0.0.0 --port 8000 --workers 2",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default: HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.set_defaults(run=_serve, session_token=True)

    db = command(
        commands,
        "db",
        summary="Manage the database schema.",
        example="dynoscope db upgrade",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    command(
        db_commands,
        "upgrade",
        summary="Apply migrations to the service's database and the alert store.",
        details="Idempotent: run it before every start of a new release.",
        example="DATABASE_URL=postgresql://app@127.0.0.1:5432/listings dynoscope db upgrade",
    ).set_defaults(run=_db)

    seed = command(
        commands,
        "seed",
        summary="Load demo properties.",
        example="dynoscope seed --properties 500 --if-empty",
    )
    seed.add_argument("--properties", type=int, default=200, help="how many (default: 200)")
    seed.add_argument("--if-empty", action="store_true", help="only when no property exists")
    seed.set_defaults(run=lambda s, a: asyncio.run(_seed(s, a)))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "client_only", False):
        # A client of some deployment (``dynoscope load``): this host's service settings,
        # production secrets included, are none of its business.
        configure_logging("INFO")
        client: int = args.run(None, args)
        return client
    if getattr(args, "session_token", False):
        # From here SIGTERM ends the command through its finally blocks (the token file).
        with _sigterm_exits(), session_token(os.environ) as token_file:
            return _run(args, os.environ, token_file=token_file)
    return _run(args, adopt_session_token(os.environ, url=getattr(args, "url", None)))


def _run(args: argparse.Namespace, environ: Mapping[str, str], **extra: Path | None) -> int:
    try:
        settings = Settings.from_env(environ)
    except SettingsError as exc:
        print(f"dynoscope: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if extra:
        args = argparse.Namespace(**{**vars(args), **extra})
    result: int = args.run(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
