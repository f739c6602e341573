"""``dynoscope`` subcommands of the alerts package.

dynoscope rules check FILE [FILE ...]   validate rule files (exit 1 with every problem)
dynoscope rules export [-o FILE]        print the configured rules as a Prometheus rule file
dynoscope alerts run                    run the alert scheduler on its own
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Protocol

from alerts.errors import AlertsError
from alerts.loader import load_rules, rule_paths
from alerts.settings import AlertSettings
from instrumentation.settings import TelemetrySettings


class Configured(Protocol):
    """What these commands need of the composed settings."""

    @property
    def alerts(self) -> AlertSettings: ...

    @property
    def telemetry(self) -> TelemetrySettings: ...


def _check(settings: Configured, args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.files)
    except AlertsError as exc:
        print(f"dynoscope rules check: rejected\n{exc}", file=sys.stderr)
        return 1
    groups, files = len(rules.groups), len(rules.files)
    print(f"ok: {len(rules.rules)} rules in {groups} groups from {files} file(s)")
    return 0


def _export(settings: Configured, args: argparse.Namespace) -> int:
    from alerts.export import export_yaml

    paths = args.rules or rule_paths(settings.alerts.rules_path)
    try:
        text = export_yaml(load_rules(paths))
    except AlertsError as exc:
        print(f"dynoscope rules export: {exc}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _run(settings: Configured, args: argparse.Namespace) -> int:
    from alerts.monitor import run_standalone

    try:
        asyncio.run(run_standalone(settings.alerts, settings.telemetry))
    except AlertsError as exc:
        print(f"dynoscope alerts run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``dynoscope rules check|export`` and ``dynoscope alerts run``."""
    rules = commands.add_parser("rules", help="alert rule files")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rule_commands.add_parser("check", help="validate rule files and exit")
    check.add_argument("files", nargs="+", metavar="FILE", help="rule file or folder")
    check.set_defaults(run=_check)
    export = rule_commands.add_parser("export", help="print a Prometheus rule file")
    export.add_argument(
        "--rules", nargs="+", metavar="PATH", help="rule files (default: ALERT_RULES_PATH)"
    )
    export.add_argument("-o", "--output", help="write here instead of standard output")
    export.set_defaults(run=_export)

    alerts = commands.add_parser("alerts", help="alert engine")
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True)
    alert_commands.add_parser("run", help="evaluate rules and notify, until stopped").set_defaults(
        run=_run
    )
