"""Delivery from memory: order per alert, retries, a broken receiver never stalls the others,
restarts neither lose nor reorder, and finished rows are pruned (fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.notification import deliveries
from alerts.delivery.notifiers import WebhookConfig, WebhookNotifier
from alerts.delivery.outbox import Outbox
from alerts.delivery.retry import RetryPolicy
from alerts.engine.ledger import Ledger
from alerts.engine.query import Sample, Vector
from alerts.engine.state import Evaluation, evaluate
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.store.store import Store
from alerts.store.writer import StoreWriter
from instrumentation.catalogue import Catalogue
from tests.alerts.conftest import Recorder

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
RULE = Rule(name="Hot", group="g", query=RawQuery("x"), op=Op.GT, threshold=0)
COLD = Rule(name="Cold", group="g", query=RawQuery("y"), op=Op.GT, threshold=0)


def firing(now: datetime, *, rule: Rule = RULE) -> Evaluation:
    return evaluate(rule, (), result=Vector((Sample((), 1.0),)), now=now)


def resolved(previous: Evaluation, now: datetime) -> Evaluation:
    return evaluate(RULE, previous.alerts, result=Vector(()), now=now)


def queued(outbox: Outbox, evaluation: Evaluation, now: datetime) -> None:
    outbox.enqueue(deliveries(evaluation.notifications, receivers=outbox.receivers, now=now))


async def test_resolved_never_overtakes_a_firing_that_is_backing_off() -> None:
    webhook, console = Recorder("webhook"), Recorder("console")
    outbox = Outbox(
        notifiers={"webhook": webhook, "console": console},
        ledger=Ledger(),
        retry=RetryPolicy(backoff=timedelta(minutes=1)),
    )
    fired = firing(T0)
    queued(outbox, fired, T0)
    webhook.down = True
    await outbox.deliver(now=T0)  # the webhook's "firing" backs off until T0 + 1 min
    webhook.down = False
    later = T0 + timedelta(seconds=10)
    queued(outbox, resolved(fired, later), later)

    await outbox.deliver(now=later)
    assert webhook.accepted == []  # "resolved" waits for the "firing" queued before it
    assert console.accepted == ["firing", "resolved"]  # other receivers are not held up

    await outbox.deliver(now=T0 + timedelta(minutes=1))
    await outbox.deliver(now=T0 + timedelta(minutes=1, seconds=1))
    assert webhook.accepted == ["firing", "resolved"]
    assert outbox.pending() == 0


async def test_an_abandoned_delivery_releases_the_ones_queued_after_it() -> None:
    webhook = Recorder("webhook")
    outbox = Outbox(
        notifiers={"webhook": webhook}, ledger=Ledger(), retry=RetryPolicy(max_attempts=1)
    )
    fired = firing(T0)
    queued(outbox, fired, T0)
    queued(outbox, resolved(fired, T0), T0)
    webhook.down = True
    await outbox.deliver(now=T0)  # "firing" fails once and is abandoned
    webhook.down = False
    await outbox.deliver(now=T0)
    assert webhook.accepted == ["resolved"]


async def test_an_unexpected_notifier_error_is_retried_and_stalls_nothing() -> None:
    # A malformed URL (settings refuse one; config built by hand here) makes httpx raise
    # InvalidURL, which is no NotificationError: it must cost a retry, not the queue.
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    console = Recorder("console")
    async with httpx.AsyncClient() as client:
        broken = WebhookNotifier(WebhookConfig(url="http://exa mple:99999/x"), client=client)
        outbox = Outbox(
            notifiers={"webhook": broken, "console": console},
            ledger=Ledger(),
            metrics=metrics,
            retry=RetryPolicy(max_attempts=3),
        )
        queued(outbox, firing(T0), T0)
        queued(outbox, firing(T0, rule=COLD), T0)
        for seconds in (0, 1, 3, 7):
            await outbox.deliver(now=T0 + timedelta(seconds=seconds))
    assert console.accepted == ["firing", "firing"]
    assert outbox.pending() == 0  # the webhook's two were retried, then abandoned
    value = metrics.registry.get_sample_value
    assert value("dynoscope_notifications_total", {"receiver": "webhook", "outcome": "failed"}) == 2
    assert (
        value("dynoscope_notifications_total", {"receiver": "webhook", "outcome": "retried"}) == 4
    )


async def test_a_restart_queues_undelivered_notifications_again_in_order(
    sqlite_store: AsyncEngine,
) -> None:
    store = Store(sqlite_store)
    ledger = Ledger()
    down = Recorder("webhook")
    down.down = True
    before = Outbox(
        notifiers={"webhook": down}, ledger=ledger, retry=RetryPolicy(backoff=timedelta(hours=1))
    )
    fired = firing(T0)
    queued(before, fired, T0)
    queued(before, resolved(fired, T0 + timedelta(seconds=5)), T0 + timedelta(seconds=5))
    await before.deliver(now=T0)
    writer = StoreWriter(store=store, ledger=ledger, outbox=before, rules=["Hot"])
    assert await writer.flush(now=T0 + timedelta(seconds=5))

    webhook = Recorder("webhook")
    ledger = Ledger()
    after = Outbox(notifiers={"webhook": webhook}, ledger=ledger)
    restarted = StoreWriter(store=store, ledger=ledger, outbox=after, rules=["Hot"])
    later = T0 + timedelta(hours=2)
    assert await restarted.connect(now=later)
    assert after.pending() == 2
    await after.deliver(now=later)
    await after.deliver(now=later)
    assert webhook.accepted == ["firing", "resolved"]
    await restarted.flush(now=later)
    rows = await store.deliveries()
    assert [(d.status, d.attempts, d.delivered_at) for d in rows] == [
        ("firing", 2, later),
        ("resolved", 1, later),
    ]


async def test_finished_deliveries_are_pruned_after_a_week_at_most_hourly(
    sqlite_store: AsyncEngine,
) -> None:
    store = Store(sqlite_store)
    ledger = Ledger()
    webhook = Recorder("webhook")
    outbox = Outbox(
        notifiers={"webhook": webhook}, ledger=ledger, retry=RetryPolicy(backoff=timedelta(hours=1))
    )
    writer = StoreWriter(store=store, ledger=ledger, outbox=outbox, rules=["Hot"])
    await writer.connect(now=T0)
    fired = firing(T0)
    queued(outbox, fired, T0)
    assert await outbox.deliver(now=T0) == 1  # delivered at T0
    await writer.flush(now=T0)
    week = T0 + timedelta(days=7, minutes=10)
    webhook.down = True
    queued(outbox, firing(week), week)
    await outbox.deliver(now=week)  # fails and stays pending
    await writer.flush(now=week + timedelta(minutes=30))  # pruned 7 days after T0 ...
    assert [d.status for d in await store.deliveries()] == ["firing"]
    assert (await store.deliveries())[0].delivered_at is None  # ... only the pending one left
