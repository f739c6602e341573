"""Delivery order per alert, the wake-up flag, and pruning of finished rows (fixed clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.errors import NotificationError
from alerts.outbox import Outbox
from alerts.query import Sample, Vector
from alerts.rule import Op, RawQuery, Rule
from alerts.state import Evaluation, evaluate
from alerts.store import Delivery, Store, alert_outbox

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
RULE = Rule(name="Hot", group="g", query=RawQuery("x"), op=Op.GT, threshold=0)


class Receiver:
    """A notifier (our interface) that fails while ``down``, recording what it accepted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.accepted: list[str] = []

    async def send(self, delivery: Delivery) -> None:
        if self.down:
            raise NotificationError("answered HTTP 503", receiver=self.name, retryable=True)
        self.accepted.append(delivery.status)


def firing(now: datetime) -> Evaluation:
    return evaluate(RULE, (), result=Vector((Sample((), 1.0),)), now=now)


def resolved(previous: Evaluation, now: datetime) -> Evaluation:
    return evaluate(RULE, previous.alerts, result=Vector(()), now=now)


async def rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(alert_outbox))).scalar_one()
        )


async def test_resolved_never_overtakes_a_firing_that_is_backing_off(engine: AsyncEngine) -> None:
    store = Store(engine)
    webhook, console = Receiver("webhook"), Receiver("console")
    outbox = Outbox(
        store=store,
        notifiers={"webhook": webhook, "console": console},
        backoff=timedelta(minutes=1),
    )
    receivers = ["webhook", "console"]
    fired = firing(T0)
    await store.save({"Hot": fired}, receivers=receivers, now=T0)
    webhook.down = True
    await outbox.deliver(now=T0)  # the webhook's "firing" backs off until T0 + 1 min
    webhook.down = False
    later = T0 + timedelta(seconds=10)
    await store.save({"Hot": resolved(fired, later)}, receivers=receivers, now=later)

    await outbox.deliver(now=later)
    assert webhook.accepted == []  # "resolved" waits for the "firing" queued before it
    assert console.accepted == ["firing", "resolved"]  # other receivers are not held up

    await outbox.deliver(now=T0 + timedelta(minutes=1))
    await outbox.deliver(now=T0 + timedelta(minutes=1, seconds=1))
    assert webhook.accepted == ["firing", "resolved"]
    assert await store.pending_deliveries() == 0


async def test_an_abandoned_row_releases_the_ones_queued_after_it(engine: AsyncEngine) -> None:
    store = Store(engine)
    webhook = Receiver("webhook")
    outbox = Outbox(store=store, notifiers={"webhook": webhook}, max_attempts=1)
    fired = firing(T0)
    await store.save({"Hot": fired}, receivers=["webhook"], now=T0)
    await store.save({"Hot": resolved(fired, T0)}, receivers=["webhook"], now=T0)
    webhook.down = True
    await outbox.deliver(now=T0)  # "firing" fails once and is abandoned
    webhook.down = False
    await outbox.deliver(now=T0)
    assert webhook.accepted == ["resolved"]


class RacingStore(Store):
    """A store whose pending count is taken just before an evaluation queues a row."""

    outbox: Outbox

    async def pending_deliveries(self) -> int:
        count = await super().pending_deliveries()
        # What Scheduler.run_group does while this count is on its way back.
        await self.save({"Hot": firing(T0)}, receivers=["webhook"], now=T0)
        self.outbox.maybe_pending = True
        del RacingStore.pending_deliveries  # race once
        return count


async def test_a_wake_up_during_delivery_is_not_lost(sqlite_engine: AsyncEngine) -> None:
    store = RacingStore(sqlite_engine)
    webhook = Receiver("webhook")
    outbox = Outbox(store=store, notifiers={"webhook": webhook})
    store.outbox = outbox
    assert await outbox.deliver(now=T0) == 0
    assert outbox.maybe_pending
    assert await outbox.deliver(now=T0) == 1
    assert webhook.accepted == ["firing"]


async def test_finished_rows_are_pruned_after_a_week_at_most_hourly(
    engine: AsyncEngine,
) -> None:
    store = Store(engine)
    webhook = Receiver("webhook")
    outbox = Outbox(store=store, notifiers={"webhook": webhook}, backoff=timedelta(hours=1))
    fired = firing(T0)
    await store.save({"Hot": fired}, receivers=["webhook"], now=T0)
    assert await outbox.deliver(now=T0) == 1  # delivered at T0
    later = T0 + timedelta(minutes=30)
    await store.save({"Hot": resolved(fired, later)}, receivers=["webhook"], now=later)
    (row,) = await store.due(now=later)
    await store.abandon(row, at=later, error="gave up")  # abandoned at T0 + 30 min
    week = T0 + timedelta(days=7, minutes=10)
    webhook.down = True
    await store.save({"Hot": firing(week)}, receivers=["webhook"], now=week)
    assert await rows(engine) == 3

    await outbox.deliver(now=week)  # the new row fails and stays pending
    assert await rows(engine) == 2  # delivered a week and 10 minutes ago: gone
    await outbox.deliver(now=week + timedelta(minutes=40))
    assert await rows(engine) == 2  # the abandoned row is old enough, but pruned < 1 h ago
    await outbox.deliver(now=week + timedelta(hours=1))
    assert await rows(engine) == 1  # the abandoned row went; the pending one stays
    assert await store.pending_deliveries() == 1
