"""``dynoscope report``: the scaling-health scorecard and capacity estimate, from Prometheus
or from a running API's own engine.

dynoscope report [--since 1h] [--json] [--prometheus URL | --url API_URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from typing import Protocol

from pydantic import SecretStr

from alerts.errors import AlertsError
from alerts.rules.duration import parse_duration
from alerts.settings import AlertSettings
from instrumentation.cli import AddCommand


class Configured(Protocol):
    """What the report needs of the composed settings."""

    @property
    def alerts(self) -> AlertSettings: ...

    @property
    def admin_token(self) -> SecretStr | None: ...


NO_SOURCE = (
    "dynoscope report: nothing to read: give --prometheus http://prometheus-host:9090 (or set\n"
    "PROMETHEUS_URL: the Prometheus that scrapes the API instances), or --url of an API\n"
    "that runs the alert engine itself (the embedded default, e.g. http://127.0.0.1:8000)."
)


def _report(settings: Configured, args: argparse.Namespace) -> int:
    from ops.report import read_report_from, read_report_of_engine

    url = args.prometheus or (None if args.url else settings.alerts.prometheus_url)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if url is None and args.url is None:
        print(NO_SOURCE, file=sys.stderr)
        return 2
    try:
        if url is not None:
            report = asyncio.run(read_report_from(url, since=args.since))
        else:
            report = asyncio.run(read_report_of_engine(args.url, token=token, since=args.since))
    except AlertsError as exc:
        print(f"dynoscope report: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        from ops.report import format_report

        print(format_report(report))
    return 0


def _window(text: str) -> timedelta:
    try:
        window = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if window <= timedelta(0):
        raise argparse.ArgumentTypeError("--since must be longer than 0")
    return window


def _register_report(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    report = command(
        commands,
        "report",
        summary="Print the scaling-health scorecard and capacity estimate.",
        details="Reads Prometheus (--prometheus or PROMETHEUS_URL), or with --url the window\n"
        "of the alert engine inside an API (the embedded default; ADMIN_TOKEN, which\n"
        "`dynoscope serve` makes in development): p95 latency, error ratio, cache hit\n"
        "ratio, database queries per second and per request, memory growth per\n"
        "instance, each PASS/WARN/FAIL against its target; concurrency per instance\n"
        "(Little's law) against ~100 planned per instance and the instances needed.\n"
        "A line without data says so; exit status 1 when the source does not answer.",
        example="dynoscope report --since 1h --prometheus http://127.0.0.1:9090\n"
        "  dynoscope report --since 15m --url http://127.0.0.1:8000",
    )
    report.add_argument(
        "--since", type=_window, default=timedelta(hours=1), help="window: 15m, 1h (default: 1h)"
    )
    source = report.add_mutually_exclusive_group()
    source.add_argument("--prometheus", metavar="URL", help="Prometheus (default: PROMETHEUS_URL)")
    source.add_argument(
        "--url", metavar="API_URL", help="an API running the alert engine itself (embedded)"
    )
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(run=_report)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope report``."""
    _register_report(commands, command)
