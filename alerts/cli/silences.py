"""``dynoscope silence add|list|expire|ack``: silences in the alert store (``ALERT_STORE_URL``).

    dynoscope silence add 'alertname="CacheHitRateLow"' --duration 2h --author ana \\
        --comment "cache warm-up after deploy"
    dynoscope silence add 'job="api"' --every sun --at 02:00 --length 1h --comment backups
    dynoscope silence list
    dynoscope silence expire 3f9c0a1b2c3d4e5f
    dynoscope silence ack 9d2c41f0 --comment "rolling back the deploy"

The running engine picks a new or expired silence up within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from alerts.engine.state import AlertState
from alerts.rules.duration import parse_duration
from alerts.settings import AlertSettings
from alerts.silences.recurrence import Recurrence
from alerts.silences.silence import Silence
from alerts.silences.store import SilenceStore
from alerts.store.migrate import upgrade
from alerts.store.store import Store, create_store_engine
from instrumentation.cli import AddCommand


class Configured(Protocol):
    @property
    def alerts(self) -> AlertSettings: ...


def _store_errors(
    command: Callable[[Configured, argparse.Namespace], int],
) -> Callable[[Configured, argparse.Namespace], int]:
    """One line naming the store (and the directory a relative path is read from), never a
    traceback, when the alert store cannot be opened."""

    @functools.wraps(command)
    def guarded(settings: Configured, args: argparse.Namespace) -> int:
        try:
            return command(settings, args)
        except (DBAPIError, OSError) as exc:
            url = make_url(settings.alerts.store_url)
            where = url.render_as_string(hide_password=True)
            if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_absolute():
                where += f" (relative to {Path.cwd()})"
            reason = (
                str(getattr(exc, "orig", exc)).splitlines()[0] if str(exc) else type(exc).__name__
            )
            print(
                f"dynoscope silence: cannot use the alert store {where}: {reason}", file=sys.stderr
            )
            return 1

    return guarded


async def _with_store(settings: AlertSettings, work: Any) -> Any:
    engine = create_store_engine(settings.store_url, timeout=settings.store_timeout_seconds)
    try:
        await upgrade(engine)
        return await work(SilenceStore(engine))
    finally:
        await engine.dispose()


@_store_errors
def _add(settings: Configured, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        recurrence = None
        if args.every is not None:
            recurrence = Recurrence.parse(days=args.every, at=args.at, length=args.length)
        duration = parse_duration(args.duration or ("365d" if recurrence else "2h"))
        silence = Silence.new(
            args.matchers,
            starts_at=now,
            ends_at=now + duration,
            author=args.author,
            comment=args.comment,
            recurrence=recurrence,
        )
    except ValueError as exc:
        print(f"dynoscope silence add: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_with_store(settings.alerts, lambda store: store.add(silence)))
    print(silence.id)
    return 0


@_store_errors
def _list(settings: Configured, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    found = asyncio.run(_with_store(settings.alerts, lambda store: store.current(now)))
    for silence in found:
        matchers = ", ".join(str(m) for m in silence.matchers)
        state = "active" if silence.active(now) else "waiting"
        ends = silence.ends_at.isoformat(timespec="seconds")
        kind = f"{silence.recurrence}, " if silence.recurrence else ""
        if silence.fingerprint:
            kind = f"acknowledges {silence.fingerprint}, "
        print(
            f"{silence.id}  {state}  {kind}until {ends}  {matchers}  "
            f"{silence.author}: {silence.comment}"
        )
    if not found:
        print("no silences in force or waiting")
    return 0


@_store_errors
def _expire(settings: Configured, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    done = asyncio.run(_with_store(settings.alerts, lambda store: store.expire(args.id, now=now)))
    if not done:
        print(f"dynoscope silence expire: no running silence {args.id}", file=sys.stderr)
        return 1
    print(f"expired {args.id}")
    return 0


async def _acknowledge(settings: AlertSettings, args: argparse.Namespace) -> tuple[int, str]:
    engine = create_store_engine(settings.store_url, timeout=settings.store_timeout_seconds)
    try:
        await upgrade(engine)
        firing = [a for a in await Store(engine).active() if a.state is AlertState.FIRING]
        found = [a for a in firing if a.fingerprint.startswith(args.fingerprint)]
        if len(found) != 1:
            what = "no firing alert" if not found else f"{len(found)} firing alerts"
            return 1, f"{what} with a fingerprint starting {args.fingerprint!r}"
        (alert,) = found
        ack = Silence.acknowledge(
            alert, now=datetime.now(UTC), author=args.author, comment=args.comment
        )
        await SilenceStore(engine).add(ack)
        return 0, f"{ack.id} acknowledges {alert.rule} {alert.fingerprint}"
    finally:
        await engine.dispose()


@_store_errors
def _ack(settings: Configured, args: argparse.Namespace) -> int:
    code, message = asyncio.run(_acknowledge(settings.alerts, args))
    print(
        message if code == 0 else f"dynoscope silence ack: {message}",
        file=sys.stderr if code else sys.stdout,
    )
    return code


def register_silences(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope silence add|list|expire|ack``."""
    silence = command(
        commands,
        "silence",
        summary="Silence alert notifications: add, list or expire silences.",
        details="Silenced alerts still change state and are recorded, but send nothing.",
        example='dynoscope silence add alertname="CacheHitRateLow" --duration 2h',
    )
    sub = silence.add_subparsers(dest="silence_command", required=True, metavar="COMMAND")
    add = command(
        sub,
        "add",
        summary="Hold back notifications of matching alerts for a while or every week.",
        details='Matchers: name="value" or name=~"regex". --every adds a weekly window (UTC).',
        example='dynoscope silence add severity="warning" --every sun --at 02:00 --length 1h',
    )
    add.add_argument("matchers", nargs="+", metavar="MATCHER", help='name="value" or name=~"re"')
    add.add_argument(
        "--duration", help="how long it exists (e.g. 30m, 2h; default 2h, 365d with --every)"
    )
    add.add_argument("--every", metavar="DAYS", help="a weekly window: sun, mon,tue or daily")
    add.add_argument("--at", default="00:00", help="window start, HH:MM UTC (with --every)")
    add.add_argument("--length", default="1h", help="window length (with --every)")
    add.add_argument("--author", default=getpass.getuser(), help="who (default: you)")
    add.add_argument("--comment", default="", help="why")
    add.set_defaults(run=_add)
    command(
        sub, "list", summary="List the silences not yet ended.", example="dynoscope silence list"
    ).set_defaults(run=_list)
    expire = command(
        sub, "expire", summary="End a silence now.", example="dynoscope silence expire 3f2a..."
    )
    expire.add_argument("id", metavar="ID")
    expire.set_defaults(run=_expire)
    ack = command(
        sub,
        "ack",
        summary="Acknowledge a firing alert: no reminders until it resolves.",
        details="FINGERPRINT may be a prefix (as GET /alerts shows it) naming one firing alert.",
        example='dynoscope silence ack 9d2c41f0 --comment "rolling back"',
    )
    ack.add_argument("fingerprint", metavar="FINGERPRINT")
    ack.add_argument("--author", default=getpass.getuser(), help="who (default: you)")
    ack.add_argument("--comment", default="", help="why")
    ack.set_defaults(run=_ack)
