"""``dynoscope report``: the scaling-health scorecard and capacity estimate, from Prometheus.

dynoscope report [--since 1h] [--json] [--prometheus URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from typing import Protocol

from alerts.errors import AlertsError
from alerts.rules.duration import parse_duration
from alerts.settings import AlertSettings
from instrumentation.cli import AddCommand


class Configured(Protocol):
    """What the report needs of the composed settings."""

    @property
    def alerts(self) -> AlertSettings: ...


NO_PROMETHEUS = (
    "dynoscope report: no Prometheus to read: give --prometheus http://prometheus-host:9090\n"
    "or set PROMETHEUS_URL (the Prometheus that scrapes the API instances)."
)


def _report(settings: Configured, args: argparse.Namespace) -> int:
    from ops.report import read_report_from

    url = args.prometheus or settings.alerts.prometheus_url
    if url is None:
        print(NO_PROMETHEUS, file=sys.stderr)
        return 2
    try:
        report = asyncio.run(read_report_from(url, since=args.since))
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
        details="Reads Prometheus (--prometheus or PROMETHEUS_URL): p95 latency, error ratio,\n"
        "cache hit ratio, database queries per second and per request, memory growth\n"
        "per instance, each PASS/WARN/FAIL against its target; concurrency per instance\n"
        "(Little's law) against ~100 planned per instance and the instances needed.\n"
        "A line without data says so; exit status 1 when Prometheus does not answer.",
        example="dynoscope report --since 1h --prometheus http://127.0.0.1:9090",
    )
    report.add_argument(
        "--since", type=_window, default=timedelta(hours=1), help="window: 15m, 1h (default: 1h)"
    )
    report.add_argument("--prometheus", metavar="URL", help="Prometheus (default: PROMETHEUS_URL)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(run=_report)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope report``."""
    _register_report(commands, command)
