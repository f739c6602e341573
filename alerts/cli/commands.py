"""The alerts package's subcommands of the dynoscope command line.

dynoscope rules check FILE [FILE ...]   validate rule files (exit 1 with every problem)
dynoscope rules export [-o FILE]        print the configured rules as a Prometheus rule file
dynoscope alerts run                    run the alert engine on its own, against Prometheus
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alerts.errors import AlertsError
from alerts.rules.loader import load_rules, rule_paths
from alerts.settings import AlertSettings
from instrumentation.cli import AddCommand
from instrumentation.settings import TelemetrySettings

if TYPE_CHECKING:  # the engine (and its I/O) is imported only when it runs
    from alerts.engine.standalone import Pages

__all__ = ["Configured", "register"]


class Configured(Protocol):
    """What these commands need of the composed settings."""

    @property
    def alerts(self) -> AlertSettings: ...

    @property
    def telemetry(self) -> TelemetrySettings: ...


def _check(settings: Configured, args: argparse.Namespace) -> int:
    # No file named: the rules this deployment runs (ALERT_RULES_PATH, or the shipped ones).
    paths = args.files or rule_paths(settings.alerts.rules_path)
    try:
        rules = load_rules(paths)
    except AlertsError as exc:
        print(f"dynoscope rules check: rejected\n{exc}", file=sys.stderr)
        return 1
    groups, files = len(rules.groups), len(rules.files)
    print(f"ok: {len(rules.rules)} rules in {groups} groups from {files} file(s)")
    return 0


def _export(settings: Configured, args: argparse.Namespace) -> int:
    from alerts.rules.export import export_yaml

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


NO_SOURCE = (
    "dynoscope alerts run: PROMETHEUS_URL is not set.\n"
    "On its own the engine can only see the service through the Prometheus that scrapes it;\n"
    "without one it would evaluate its own, empty process and never fire. Set\n"
    "PROMETHEUS_URL=http://prometheus-host:9090 (and ALERT_STORE_URL for its store).\n"
    "For development, the API that make run starts runs the engine in its own process."
)


def _run(settings: Configured, args: argparse.Namespace) -> int:
    from alerts.engine.standalone import run_standalone

    if settings.alerts.prometheus_url is None:
        print(NO_SOURCE, file=sys.stderr)
        return 2

    pages_for: Callable[[Any], Pages | None] | None = getattr(args, "pages_for", None)
    try:
        pages = pages_for(settings) if pages_for is not None else None
    except ValueError as exc:  # its port is taken, say
        print(f"dynoscope alerts run: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_standalone(settings.alerts, settings.telemetry, pages=pages))
    except AlertsError as exc:
        print(f"dynoscope alerts run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    command: AddCommand,
    *,
    pages_for: Callable[[Any], Pages | None] | None = None,
) -> None:
    """Add ``dynoscope rules check|export`` and ``dynoscope alerts run`` (which serves the
    pages ``pages_for(settings)`` gives, if any, beside the engine)."""
    rules = command(
        commands,
        "rules",
        summary="Check alert rule files, or export them for Prometheus.",
        example="dynoscope rules check alerts/rules/",
    )
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = command(
        rule_commands,
        "check",
        summary="Validate rule files and exit.",
        details="Without FILE, the rules this deployment runs: ALERT_RULES_PATH, or the "
        "shipped ones.\nExit status 1 with every problem listed by file, rule and field.",
        example="dynoscope rules check alerts/rules/default.yml overrides.yml",
    )
    check.add_argument(
        "files", nargs="*", metavar="FILE", help="rule file or folder (default: the configured)"
    )
    check.set_defaults(run=_check)
    export = command(
        rule_commands,
        "export",
        summary="Print the rules as a Prometheus rule file.",
        details="Recording and alerting rules that promtool check rules accepts.",
        example="dynoscope rules export -o dynoscope-rules.yml",
    )
    export.add_argument(
        "--rules", nargs="+", metavar="PATH", help="rule files (default: ALERT_RULES_PATH)"
    )
    export.add_argument("-o", "--output", help="write here instead of standard output")
    export.set_defaults(run=_export)

    alerts = command(
        commands,
        "alerts",
        summary="Run the alert engine.",
        example="PROMETHEUS_URL=http://127.0.0.1:9090 dynoscope alerts run",
    )
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    command(
        alert_commands,
        "run",
        summary="Evaluate the rules against Prometheus and notify, until stopped.",
        details="Needs PROMETHEUS_URL (the Prometheus that scrapes the API); keeps its state\n"
        "in ALERT_STORE_URL. With ADMIN_TOKEN and CONSOLE_PORT it serves the console there.\n"
        "Stops on SIGINT or SIGTERM.",
        example="PROMETHEUS_URL=http://127.0.0.1:9090 dynoscope alerts run",
    ).set_defaults(run=_run, pages_for=pages_for)
