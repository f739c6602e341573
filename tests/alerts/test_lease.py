"""The leader's lease in the real store (SQLite and PostgreSQL), and fencing of writes and sends.

The lease expires by the database's clock, so the tests that need an expiry wait a fraction
of a second of real time (a lease of 0.3 s) rather than stepping a clock of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.notification import Delivery
from alerts.delivery.outbox import Outbox
from alerts.engine.election import Election, Mode
from alerts.engine.ledger import Ledger
from alerts.engine.monitor import Monitor, open_store
from alerts.engine.query import Sample, Vector
from alerts.engine.state import AlertState, evaluate
from alerts.errors import LeaseLost
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Op, RawQuery, Rule
from alerts.settings import AlertSettings
from alerts.store.lease import Fence, HostLease, StoreLease
from alerts.store.migrate import upgrade
from alerts.store.schema import lease as lease_table
from alerts.store.store import Changes, Store
from instrumentation.catalogue import Catalogue
from tests.alerts.conftest import Recorder
from tests.alerts.harness import eventually, rules_file
from tests.support.postgres_cluster import Cluster

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
SHORT = 0.3


def delivery(key: str = "aaaaaaaaaaaaaaaa") -> Delivery:
    return Delivery(
        id=f"{key}-1",
        receiver="console",
        dedup_key=key,
        status="firing",
        payload={"labels": {"alertname": "Test"}},
        created_at=T0,
        next_attempt_at=T0,
    )


async def test_one_holder_at_a_time_and_the_token_grows_at_each_change(
    store_engine: AsyncEngine,
) -> None:
    first = StoreLease(store_engine, ttl=SHORT, holder="first")
    second = StoreLease(store_engine, ttl=SHORT, holder="second")
    assert await first.acquire() and first.token == 1
    assert not await second.acquire() and second.remaining() == 0
    assert await first.acquire() and first.token == 1  # a renewal keeps the token
    assert 0 < first.remaining() <= SHORT
    await asyncio.sleep(SHORT * 1.5)  # first stops renewing: the lease runs out
    assert first.remaining() == 0
    assert await second.acquire() and second.token == 2
    assert not await first.acquire() and first.token is None


async def test_a_stale_token_is_refused_and_writes_nothing(store_engine: AsyncEngine) -> None:
    store = Store(store_engine)
    old = StoreLease(store_engine, ttl=SHORT, holder="old")
    assert await old.acquire()
    stale = old.fence()
    assert stale == Fence(lease="engine", holder="old", token=1)
    await asyncio.sleep(SHORT * 1.5)
    new = StoreLease(store_engine, ttl=SHORT, holder="new")
    assert await new.acquire()
    with pytest.raises(LeaseLost, match="token 1 of old"):
        await store.write(Changes(deliveries={"x": delivery()}), fence=stale)
    assert await store.deliveries() == []
    await store.write(Changes(deliveries={"x": delivery()}), fence=new.fence())
    assert [d.dedup_key for d in await store.deliveries()] == ["aaaaaaaaaaaaaaaa"]


async def test_a_standby_never_writes(store_engine: AsyncEngine) -> None:
    standby = StoreLease(store_engine, ttl=SHORT, holder="standby")
    leader = StoreLease(store_engine, ttl=5, holder="leader")
    assert await leader.acquire() and not await standby.acquire()
    with pytest.raises(LeaseLost):
        await Store(store_engine).write(
            Changes(deliveries={"x": delivery()}), fence=standby.fence()
        )


async def test_release_hands_over_at_once(store_engine: AsyncEngine) -> None:
    leader = StoreLease(store_engine, ttl=30, holder="leader")
    standby = StoreLease(store_engine, ttl=30, holder="standby")
    assert await leader.acquire()
    await leader.release()
    assert leader.remaining() == 0
    assert await standby.acquire() and standby.token == 2
    async with store_engine.connect() as connection:
        row = (await connection.execute(select(lease_table))).one()
    assert row.holder == "standby" and row.token == 2


async def test_election_runs_the_engine_only_while_the_lease_is_held(
    store_engine: AsyncEngine,
) -> None:
    events: list[str] = []
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))

    async def elected() -> bool:
        events.append("elected")
        return True

    async def deposed() -> None:
        events.append("deposed")

    mine = StoreLease(store_engine, ttl=SHORT, holder="mine")
    election = Election(mine, on_elected=elected, on_deposed=deposed, metrics=metrics)
    await election.step()
    assert election.leading and events == ["elected"]
    assert metrics.registry.get_sample_value("dynoscope_scheduler_leader") == 1
    await asyncio.sleep(SHORT * 1.5)  # not renewed: another engine takes it
    assert await StoreLease(store_engine, ttl=30, holder="other").acquire()
    await election.step()
    assert not election.leading and events == ["elected", "deposed"]
    assert metrics.registry.get_sample_value("dynoscope_scheduler_leader") == 0


async def test_taking_the_lease_back_tells_whether_anyone_held_it_in_between(
    store_engine: AsyncEngine,
) -> None:
    mine = StoreLease(store_engine, ttl=SHORT, holder="mine")
    assert await mine.acquire() and not mine.resumed  # a first term
    assert await mine.acquire() and not mine.resumed  # a renewal is no new term
    await asyncio.sleep(SHORT * 1.5)  # it lapses; nobody takes it
    assert await mine.acquire() and mine.resumed and mine.token == 2
    await asyncio.sleep(SHORT * 1.5)
    other = StoreLease(store_engine, ttl=SHORT, holder="other")
    assert await other.acquire() and not other.resumed and other.token == 3
    await asyncio.sleep(SHORT * 1.5)
    assert await mine.acquire() and not mine.resumed and mine.token == 4


async def test_a_leader_cut_off_longer_than_its_lease_goes_on_from_memory_when_it_is_back(
    live_cluster: Cluster, tmp_path: Path
) -> None:
    # Its store out of reach for longer than the lease and no peer to say otherwise, the
    # leader goes on without the store (nobody else can lead meanwhile) and writes nothing.
    # When the store returns it takes its own lease back: what it decided and could not
    # write is still in its memory, and goes to the store.
    url = live_cluster.create_database(f"resume_{uuid.uuid4().hex[:8]}")
    settings = AlertSettings.from_env(
        {
            "ALERT_STORE_URL": url,
            "ALERT_STORE_TIMEOUT": "0.3",
            "ALERT_LEASE_SECONDS": "1",
            "ALERT_RULES_PATH": str(rules_file(tmp_path, {"Watchdog": {}})),
        }
    )
    store = open_store(settings)
    monitor = Monitor.build(settings, store=store, job="alerts")
    await monitor.start(immediately=True)
    try:
        assert monitor.leading
        live_cluster.kill()
        rule = Rule(name="Hot", group="g", query=RawQuery("x"), op=Op.GT, threshold=0)
        hot = evaluate(rule, (), result=Vector((Sample((("instance", "a"),), 2.0),)), now=T0)
        monitor.ledger.record({"Hot": hot}, now=T0)  # decided while the store is gone
        election = monitor.election
        assert election is not None
        await eventually(
            lambda: election.mode is Mode.DEGRADED, seconds=10, what="it acts without the store"
        )
        assert monitor.leading and monitor.ledger.backlog > 0  # evaluating, writing nothing
        live_cluster.start()
        await eventually(lambda: election.mode is Mode.LEADER, seconds=20, what="it leads again")
        assert "Hot" in {alert.rule for alert in monitor.ledger.active()}  # memory kept
        await eventually(
            lambda: monitor.writer.up is True and monitor.ledger.backlog == 0,
            seconds=10,
            what="the backlog is written",
        )
        stored = Store(store)
        assert "Hot" in {alert.rule for alert in await stored.active()}
        assert ("Hot", AlertState.FIRING) in {(h.rule, h.state) for h in await stored.history()}
    finally:
        await monitor.stop()
        await store.dispose()


class FixedLease:
    """A lease (our interface) with a fixed number of seconds left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def remaining(self) -> float:
        return self.seconds

    def writes(self) -> bool:
        return self.seconds > 0

    def fence(self) -> Fence | None:
        return None

    def drop(self) -> None:
        self.seconds = 0


class Slow(Recorder):
    """Takes ``seconds`` to accept, recording when a send began."""

    groups = True
    resend_every = None

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(name)
        self.seconds = seconds
        self.started = 0

    async def send(self, delivery: Delivery) -> None:
        self.started += 1
        await asyncio.sleep(self.seconds)
        await super().send(delivery)


async def test_nothing_is_sent_without_the_lease() -> None:
    console = Recorder("console")
    outbox = Outbox(notifiers={"console": console}, ledger=Ledger(), lease=FixedLease(0))
    outbox.enqueue([delivery()])
    assert await outbox.deliver(now=T0) == 0
    assert console.accepted == [] and outbox.pending() == 1


async def test_a_send_never_outlives_the_lease() -> None:
    slow = Slow("console", seconds=5)
    lease = FixedLease(0.2)
    outbox = Outbox(notifiers={"console": slow}, ledger=Ledger(), lease=lease)
    outbox.enqueue([delivery()])
    started = asyncio.get_running_loop().time()
    assert await outbox.deliver(now=T0) == 0
    assert asyncio.get_running_loop().time() - started < 1
    assert slow.started == 1 and slow.accepted == []
    assert outbox.pending() == 1  # kept, for the next leader to send


def test_a_host_lease_is_always_held_and_fences_nothing() -> None:
    lease = HostLease()
    assert lease.remaining() == math.inf and lease.fence() is None


@pytest.mark.postgres
async def test_a_leader_cut_off_from_its_store_stops_sending_before_the_lease_expires(
    live_cluster: Cluster,
) -> None:
    url = live_cluster.create_database(f"lease_{uuid.uuid4().hex[:8]}")
    engine = open_store(
        AlertSettings.from_env({"ALERT_STORE_URL": url, "ALERT_STORE_TIMEOUT": "0.3"})
    )
    await upgrade(engine)
    ttl = 1.0
    lease = StoreLease(engine, ttl=ttl, holder="leader")
    console = Recorder("console")
    outbox = Outbox(notifiers={"console": console}, ledger=Ledger(), lease=lease)
    sent_at: list[float] = []
    try:
        assert await lease.acquire()
        renewed = time.monotonic()  # the store's expiry is later than this plus ttl
        live_cluster.kill()  # the partition: every renewal from now on fails
        for number in range(40):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.2):
                    await lease.acquire()
            outbox.enqueue([delivery(f"{number:016x}")])
            if await outbox.deliver(now=T0):
                sent_at.append(time.monotonic())
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    assert sent_at, "it sent while the lease lasted"
    assert max(sent_at) < renewed + ttl
    assert lease.remaining() == 0 and outbox.pending() > 0
