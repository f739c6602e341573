from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.notification import Delivery
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.outbox import Outbox
from alerts.engine.evaluator import Evaluator
from alerts.engine.ledger import Ledger
from alerts.engine.monitor import open_store
from alerts.engine.query import QueryResult
from alerts.engine.sources.local import LocalSource
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Query, Rule
from alerts.store.migrate import upgrade
from alerts.store.store import Store
from alerts.store.writer import StorePolicy, StoreWriter
from api.settings import Settings
from instrumentation.catalogue import Catalogue
from tests.support.postgres_cluster import Cluster, private_cluster


@contextlib.asynccontextmanager
async def migrated_store(environ: Mapping[str, str]) -> AsyncIterator[AsyncEngine]:
    """The alert store ``environ`` names, migrated; disposed afterwards."""
    built = open_store(Settings.from_env(environ).alerts)
    await upgrade(built)
    try:
        yield built
    finally:
        await built.dispose()


@pytest.fixture
def store_environ(environ: dict[str, str], stack: str) -> dict[str, str]:
    """On PostgreSQL the store is a PostgreSQL database too (the run's own)."""
    if stack == "sqlite":
        return environ
    return {**environ, "ALERT_STORE_URL": environ["DATABASE_URL"]}


@pytest.fixture
async def store_engine(store_environ: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    """A migrated alert store on each stack (SQLite, PostgreSQL)."""
    async with migrated_store(store_environ) as built:
        yield built


@pytest.fixture
async def sqlite_store(sqlite_environ: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite alert store, for tests about timing rather than storage."""
    async with migrated_store(sqlite_environ) as built:
        yield built


class ScriptedSource:
    """A source (an interface we own) answering what the test scripts, counting questions."""

    name = "scripted"

    def __init__(self) -> None:
        self.answers: dict[str, QueryResult] = {}
        self.asked: list[str] = []

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        self.asked.extend(q.promql for q in queries)
        return {q: self.answers[q.promql] for q in queries}


class Recorder:
    """A notifier (our interface) that fails while ``down``, recording what it accepted."""

    groups = True
    resend_every = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = False
        self.accepted: list[str] = []

    async def send(self, delivery: Delivery) -> None:
        from alerts.errors import NotificationError

        if self.down:
            raise NotificationError("answered HTTP 503", receiver=self.name, retryable=True)
        self.accepted.append(delivery.status)


@dataclass
class Parts:
    """One engine process, wired as ``Monitor.build`` does, around a scripted source."""

    ledger: Ledger
    outbox: Outbox
    writer: StoreWriter
    evaluator: Evaluator
    metrics: EngineMetrics
    self_source: LocalSource


def engine_parts(
    store: AsyncEngine,
    source: ScriptedSource,
    *,
    rules: Sequence[Rule],
    notifiers: Mapping[str, Notifier] | None = None,
    metrics: EngineMetrics | None = None,
    timeout: float = 2.0,
) -> Parts:
    metrics = metrics or EngineMetrics(Catalogue(CollectorRegistry()))
    ledger = Ledger()
    outbox = Outbox(
        notifiers=notifiers if notifiers is not None else {"console": Recorder("console")},
        ledger=ledger,
        metrics=metrics,
    )
    writer = StoreWriter(
        store=Store(store),
        ledger=ledger,
        outbox=outbox,
        rules=[r.name for r in rules],
        metrics=metrics,
        policy=StorePolicy(timeout=timeout),
    )
    self_source = LocalSource(collectors=[metrics.registry], retention=timedelta(minutes=10))
    evaluator = Evaluator(
        source=source, self_source=self_source, ledger=ledger, outbox=outbox, metrics=metrics
    )
    evaluator.prepare(rules)
    return Parts(
        ledger=ledger,
        outbox=outbox,
        writer=writer,
        evaluator=evaluator,
        metrics=metrics,
        self_source=self_source,
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """One private PostgreSQL cluster per test session, for tests that stop it hard."""
    with private_cluster() as built:
        yield built


@pytest.fixture
def live_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The private cluster, running; started again after a test that stopped it."""
    if not cluster.up:
        cluster.start()
    yield cluster
    if not cluster.up:
        cluster.start()
