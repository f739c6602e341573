"""``dynoscope receivers list|test NAME``: check a receiver before an outage does.

``test`` sends one sample alert (``DynoscopeReceiverTest``, firing) through the receiver's real
notifier and reports what the receiver answered; the exit code is 0 when it accepted it.
Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Protocol

import httpx

from alerts.delivery.notification import deliveries
from alerts.delivery.receivers import Receivers
from alerts.delivery.routing import CONSOLE
from alerts.engine.state import Alert, AlertState, Notification
from alerts.errors import AlertsError, NotificationError
from alerts.settings import AlertSettings
from instrumentation.cli import AddCommand

SAMPLE = "DynoscopeReceiverTest"


class Configured(Protocol):
    @property
    def alerts(self) -> AlertSettings: ...


def sample_notification(now: datetime) -> Notification:
    """A firing alert that says what it is."""
    alert = Alert(
        rule=SAMPLE,
        labels=(("alertname", SAMPLE), ("severity", "info")),
        state=AlertState.FIRING,
        value=1.0,
        active_at=now,
        fired_at=now,
        annotations=(("summary", "Test notification from `dynoscope receivers test`"),),
    )
    return Notification(alert=alert, at=now)


async def send_sample(receivers: Receivers, name: str) -> str:
    """Send the sample through receiver ``name``; the answer as one line, or raise."""
    async with httpx.AsyncClient() as client:
        notifier = receivers.notifiers(client=client)[name]
        now = datetime.now(UTC)
        (delivery,) = deliveries((sample_notification(now),), receivers=(name,), now=now)
        await notifier.send(delivery)
    return f"{name}: accepted the sample alert {SAMPLE} (dedup key {delivery.dedup_key})"


def _receivers(settings: Configured) -> Receivers | None:
    try:
        return settings.alerts.receivers()
    except AlertsError as exc:
        print(f"dynoscope receivers: {exc}", file=sys.stderr)
        return None


def _list(settings: Configured, args: argparse.Namespace) -> int:
    receivers = _receivers(settings)
    if receivers is None:
        return 1
    print(f"{CONSOLE} (console: the engine's log, always)")
    for name, config in receivers.configs.items():
        print(f"{name} ({getattr(config, 'type', '?')})")
    return 0


def _test(settings: Configured, args: argparse.Namespace) -> int:
    receivers = _receivers(settings)
    if receivers is None:
        return 1
    if args.name != CONSOLE and args.name not in receivers.configs:
        known = ", ".join([CONSOLE, *receivers.configs])
        print(
            f"dynoscope receivers test: no receiver {args.name!r} (known: {known})", file=sys.stderr
        )
        return 2
    try:
        print(asyncio.run(send_sample(receivers, args.name)))
    except NotificationError as exc:
        again = "worth retrying" if exc.retryable else "will not get better by retrying"
        print(f"dynoscope receivers test: {exc} ({again})", file=sys.stderr)
        return 1
    return 0


def register_receivers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope receivers list|test NAME``."""
    receivers = command(
        commands,
        "receivers",
        summary="List the alert receivers, or send a sample alert through one.",
        details="Receivers come from ALERT_RECEIVERS_PATH (or ALERT_WEBHOOK_URL).",
        example="dynoscope receivers test slack-oncall",
    )
    sub = receivers.add_subparsers(dest="receivers_command", required=True, metavar="COMMAND")
    command(
        sub,
        "list",
        summary="List the configured receivers and their types.",
        example="dynoscope receivers list",
    ).set_defaults(run=_list)
    test = command(
        sub,
        "test",
        summary="Send a sample alert through one receiver and report its answer.",
        example="dynoscope receivers test pagerduty",
    )
    test.add_argument("name", metavar="NAME", help="receiver name (see `receivers list`)")
    test.set_defaults(run=_test)
