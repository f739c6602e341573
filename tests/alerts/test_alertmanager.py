"""Alerts pushed to a real Alertmanager appear in its ``/api/v2/alerts`` with their labels,
stay while they are refreshed, and end when resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.delivery.notification import deliveries
from alerts.delivery.notifiers.alertmanager import (
    AlertmanagerConfig,
    AlertmanagerNotifier,
    postable_alerts,
)
from alerts.delivery.outbox import Outbox
from alerts.delivery.resend import Resender
from alerts.engine.ledger import Ledger
from alerts.engine.state import Alert, AlertState, Notification
from tests.support.alertmanager import running_alertmanager

LABELS = (("alertname", "ApiLatencyP95High"), ("route", "/properties"), ("severity", "page"))


def alert(state: AlertState, *, now: datetime) -> Alert:
    return Alert(
        rule="ApiLatencyP95High",
        labels=LABELS,
        state=state,
        value=0.8,
        active_at=now - timedelta(minutes=6),
        fired_at=now - timedelta(minutes=1),
        resolved_at=now if state is AlertState.RESOLVED else None,
        annotations=(("summary", "p95 0.8s"),),
    )


@pytest.mark.prometheus
async def test_pushed_alerts_show_in_alertmanager_and_resolving_ends_them() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with running_alertmanager() as alertmanager:
        async with httpx.AsyncClient() as client:
            config = AlertmanagerConfig(name="am", url=alertmanager.url)
            notifier = AlertmanagerNotifier(config, client=client)
            outbox = Outbox(notifiers={"am": notifier}, ledger=Ledger())
            firing = alert(AlertState.FIRING, now=now)
            outbox.enqueue(deliveries((Notification(firing, now),), receivers=("am",), now=now))
            assert await outbox.deliver(now=now) == 1
            (shown,) = alertmanager.alerts()
            assert shown["labels"] == dict(LABELS)
            assert shown["annotations"] == {"summary": "p95 0.8s"}
            assert shown["status"]["state"] == "active"
            assert shown["startsAt"].startswith(firing.fired_at.strftime("%Y-%m-%dT%H:%M:%S"))
            resolved = alert(AlertState.RESOLVED, now=datetime.now(UTC))
            later = datetime.now(UTC)
            outbox.enqueue(
                deliveries((Notification(resolved, later),), receivers=("am",), now=later)
            )
            assert await outbox.deliver(now=later) == 1
            assert alertmanager.alerts() == []


def test_firing_alerts_expire_unless_refreshed_and_resolved_ones_end_at_once() -> None:
    now = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    firing = alert(AlertState.FIRING, now=now)
    (delivery,) = deliveries((Notification(firing, now),), receivers=("am",), now=now)
    (body,) = postable_alerts(delivery, now=now, ends_after=timedelta(minutes=4))
    assert body == {
        "labels": dict(LABELS),
        "annotations": {"summary": "p95 0.8s"},
        "startsAt": "2026-11-29T01:59:00Z",
        "endsAt": "2026-11-29T02:04:00Z",
    }
    (ended,) = deliveries(
        (Notification(alert(AlertState.RESOLVED, now=now), now),), receivers=("am",), now=now
    )
    assert postable_alerts(ended, now=now, ends_after=timedelta(minutes=4))[0]["endsAt"] == (
        "2026-11-29T02:00:00Z"
    )


class Forgetful:
    """A notifier (our interface) that wants firing alerts pushed again every minute."""

    groups = True

    name = "am"
    resend_every = timedelta(minutes=1)

    async def send(self, delivery: object) -> None:
        return None


async def test_firing_alerts_are_pushed_again_every_resend_interval_on_a_fixed_clock() -> None:
    t0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    ledger = Ledger()
    notifiers = {"am": Forgetful()}
    outbox = Outbox(notifiers=notifiers, ledger=ledger)
    ledger.adopt({"ApiLatencyP95High": (alert(AlertState.FIRING, now=t0),)},
                 rules={"ApiLatencyP95High"}, now=t0)  # fmt: skip
    resender = Resender(ledger=ledger, outbox=outbox, notifiers=notifiers)
    assert resender.period == timedelta(minutes=1)
    assert resender.run(now=t0) == 0  # just announced: the first push is the notification
    assert resender.run(now=t0 + timedelta(seconds=59)) == 0
    assert resender.run(now=t0 + timedelta(seconds=60)) == 1
    assert resender.run(now=t0 + timedelta(seconds=90)) == 0  # still queued: not piled up
    await outbox.deliver(now=t0 + timedelta(seconds=90))
    assert resender.run(now=t0 + timedelta(seconds=119)) == 0
    assert resender.run(now=t0 + timedelta(seconds=120)) == 1
