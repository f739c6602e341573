"""APScheduler drives the groups; an overrunning group skips runs and the skips are counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.notification import Delivery
from alerts.delivery.outbox import Outbox
from alerts.engine.evaluator import Evaluator
from alerts.engine.ledger import Ledger
from alerts.engine.query import QueryResult, Sample, Vector
from alerts.engine.scheduler import Cadence, Scheduler
from alerts.engine.sources.local import LocalSource
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Group, Op, Query, RawQuery, Rule
from alerts.store.store import Store
from alerts.store.writer import StoreWriter
from instrumentation.catalogue import Catalogue

RULE = Rule(name="Hot", group="slow", query=RawQuery("hot"), op=Op.GT, threshold=0)
GROUP = Group("slow", interval=timedelta(milliseconds=100), rules=(RULE,))


class GatedSource:
    """Answers only once the gate opens, like a Prometheus that hangs."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        await self.gate.wait()
        return {q: Vector((Sample((), 1.0),)) for q in queries}


class Recorder:
    groups = True
    resend_every = None

    name = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, delivery: Delivery) -> None:
        self.sent.append(delivery.status)


async def wait_for(condition: object, *, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


async def test_an_overrunning_group_skips_and_counts_then_recovers(
    sqlite_store: AsyncEngine,
) -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    source = GatedSource()
    recorder = Recorder()
    ledger = Ledger()
    outbox = Outbox(notifiers={"console": recorder}, ledger=ledger)
    writer = StoreWriter(store=Store(sqlite_store), ledger=ledger, outbox=outbox, rules=["Hot"])
    evaluator = Evaluator(
        source=source,
        self_source=LocalSource(collectors=[], retention=timedelta(minutes=1)),
        ledger=ledger,
        outbox=outbox,
        metrics=metrics,
    )
    scheduler = Scheduler(
        groups=[GROUP],
        evaluator=evaluator,
        outbox=outbox,
        writer=writer,
        cadence=Cadence(delivery=timedelta(milliseconds=50)),
    )
    scheduler.start(immediately=True)
    try:
        await wait_for(lambda: scheduler.skipped["slow"] >= 2)
        assert scheduler.cycles["slow"] == 0
        skipped = metrics.registry.get_sample_value(
            "dynoscope_scheduler_skipped_runs_total", {"group": "slow"}
        )
        assert skipped is not None and skipped >= 2
        source.gate.set()
        await wait_for(lambda: scheduler.cycles["slow"] >= 3)
        # The alert fired once (for: 0) and was delivered once, by the delivery job.
        await wait_for(lambda: recorder.sent == ["firing"])
        # ... and written behind by the store job.
        await wait_for(lambda: ledger.backlog == 0 and writer.up is True)
    finally:
        await scheduler.stop()
    # The notification parked in its group, and the group's message: both finished.
    stored = await Store(sqlite_store).deliveries()
    assert sorted("alerts" in d.payload for d in stored) == [False, True]
    assert all(d.delivered_at is not None for d in stored)


async def test_stop_cancels_a_run_in_progress() -> None:
    source = GatedSource()  # never opens
    ledger = Ledger()
    outbox = Outbox(notifiers={}, ledger=ledger)
    evaluator = Evaluator(
        source=source,
        self_source=LocalSource(collectors=[], retention=timedelta(minutes=1)),
        ledger=ledger,
        outbox=outbox,
    )
    scheduler = Scheduler(groups=[GROUP], evaluator=evaluator, outbox=outbox)
    scheduler.start(immediately=True)
    await wait_for(lambda: scheduler.skipped["slow"] >= 1)
    await asyncio.wait_for(scheduler.stop(), timeout=2)
    assert scheduler.cycles["slow"] == 0
