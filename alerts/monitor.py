"""The assembled alert engine: rules, sources, memory, store, notifiers and scheduler.

``Monitor.build`` wires the parts the settings ask for:

- ``PROMETHEUS_URL`` set: queries go to Prometheus; unset (embedded mode): to a
  ``LocalSource`` over the process's own registries;
- ``ALERT_RULES_PATH``: rule files (default: the shipped ``alerts/rules/default.yml``);
- ``ALERT_STORE_URL``: the engine's own store, written behind (``alerts.writer``);
- receivers: console always, plus the webhook when ``ALERT_WEBHOOK_URL`` is set.

Alert state lives in memory (``alerts.ledger``) while the engine runs, so evaluation and
delivery never wait on a database: not the one the service uses, which is what the engine
watches, and not the store, which may be slow or down too.

``dynoscope alerts run`` runs one on its own (``run_standalone``); in fully embedded mode (no
Prometheus, no Redis) one API process per database runs one inside its lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.evaluator import Evaluator
from alerts.ledger import Ledger
from alerts.loader import load_rules, rule_paths
from alerts.migrate import upgrade
from alerts.notifiers import ConsoleNotifier, Notifier, WebhookConfig, WebhookNotifier
from alerts.outbox import Outbox
from alerts.rule import RuleSet, SignalQuery
from alerts.scheduler import Clock, Scheduler, utc_now
from alerts.settings import AlertSettings
from alerts.sources import LocalSource, PrometheusSource, Source
from alerts.state import Alert
from alerts.store import HistoryEntry, Store, create_store_engine
from alerts.writer import StoreWriter
from instrumentation.catalogue import Catalogue
from instrumentation.settings import TelemetrySettings

log = logging.getLogger("dynoscope.alerts")


def retention(rules: RuleSet) -> timedelta:
    """How long the local source keeps samples: the longest window plus a margin."""
    windows = [r.query.args.window for r in rules.rules if isinstance(r.query, SignalQuery)]
    intervals = [g.interval for g in rules.groups]
    return max(windows, default=timedelta(minutes=5)) + 2 * max(intervals, default=timedelta(0))


def open_store(settings: AlertSettings) -> AsyncEngine:
    """The store's engine; a SQLite store's folder is created if missing."""
    url = make_url(settings.store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_store_engine(settings.store_url, timeout=settings.store_timeout_seconds)


@dataclass
class Monitor:
    """A running (or ready to run) alert engine."""

    rules: RuleSet
    ledger: Ledger
    store: Store
    writer: StoreWriter
    source: Source
    self_source: LocalSource
    evaluator: Evaluator
    outbox: Outbox
    scheduler: Scheduler
    metrics: Catalogue
    http: httpx.AsyncClient
    _owns_http: bool = field(default=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: AlertSettings,
        *,
        store: AsyncEngine,
        metrics: Catalogue | None = None,
        collectors: Iterable[Collector] = (),
        instance: str = "local",
        job: str = "api",
        clock: Clock = utc_now,
        http: httpx.AsyncClient | None = None,
    ) -> Monitor:
        """Wire an engine for ``settings`` on the store's engine ``store`` (migrated at start);
        raises ``RuleFileError`` on bad rules."""
        rules = load_rules(rule_paths(settings.rules_path))
        quiet = logging.getLogger("httpx")
        if quiet.level == logging.NOTSET:
            # httpx logs every request at INFO: dozens of Prometheus queries per cycle.
            quiet.setLevel(logging.WARNING)
        metrics = metrics if metrics is not None else Catalogue(CollectorRegistry())
        client = http if http is not None else httpx.AsyncClient()
        keep = retention(rules)
        target = {"instance": instance, "job": job}
        self_source = LocalSource(collectors=[metrics.registry], retention=keep, target=target)
        source: Source
        if settings.prometheus_url:
            source = PrometheusSource(url=settings.prometheus_url, client=client)
        else:
            sampled = list(collectors) or [metrics.registry]
            self_source = LocalSource(collectors=sampled, retention=keep, target=target)
            source = self_source
        notifiers: dict[str, Notifier] = {"console": ConsoleNotifier()}
        if settings.webhook_url is not None:
            config = WebhookConfig(url=settings.webhook_url)
            notifiers["webhook"] = WebhookNotifier(config, client=client)
        ledger = Ledger()
        outbox = Outbox(notifiers=notifiers, ledger=ledger, metrics=metrics)
        stored = Store(store)
        writer = StoreWriter(
            store=stored,
            ledger=ledger,
            outbox=outbox,
            rules=[rule.name for rule in rules.rules],
            metrics=metrics,
            migrate=lambda: upgrade(store),
            timeout=settings.store_timeout_seconds,
        )
        evaluator = Evaluator(
            source=source, self_source=self_source, ledger=ledger, outbox=outbox, metrics=metrics
        )
        scheduler = Scheduler(
            groups=rules.groups,
            evaluator=evaluator,
            outbox=outbox,
            writer=writer,
            metrics=metrics,
            clock=clock,
        )
        return cls(
            rules=rules,
            ledger=ledger,
            store=stored,
            writer=writer,
            source=source,
            self_source=self_source,
            evaluator=evaluator,
            outbox=outbox,
            scheduler=scheduler,
            metrics=metrics,
            http=client,
            _owns_http=http is None,
        )

    def describe(self) -> str:
        receivers = ", ".join(self.outbox.receivers)
        store = self.store.engine.url.render_as_string(hide_password=True)
        return (
            f"{len(self.rules.rules)} rules in {len(self.rules.groups)} groups, "
            f"source {self.source.name}, receivers {receivers}, store {store}"
        )

    def active(self) -> list[Alert]:
        """Pending and firing alerts, from memory (the authority while the engine runs)."""
        return self.ledger.active()

    async def history(self, *, limit: int = 100) -> list[HistoryEntry]:
        """The latest transitions: from the store, or from memory while it is down."""
        if self.writer.up and not self.ledger.backlog:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    return await self.store.history(limit=limit)
        return list(reversed(self.ledger.recent))[:limit]

    async def start(self, *, immediately: bool = False) -> None:
        """Load the store (if it answers) and start evaluating on the running loop."""
        self.evaluator.prepare(self.rules.rules)
        now = self.scheduler.clock()
        if not await self.writer.connect(now=now):
            log.error("alert engine starts without its store; it is tried again every second")
        # A first snapshot now, so a rate over the first window has a starting point.
        self.self_source.sample(now)
        self.scheduler.start(immediately=immediately)
        log.info("alert engine: %s", self.describe())

    async def stop(self) -> None:
        """Stop evaluating, write what is left (briefly), and close the HTTP client."""
        await self.scheduler.stop()
        # A store never reached is not written now either: without its state loaded, a
        # write would replace stored alerts (and their timers) with this process's view.
        written = self.writer.loaded and await self.writer.flush(now=self.scheduler.clock())
        if not written and self.ledger.backlog:
            log.error("alert engine stopped with %d unwritten change(s)", self.ledger.backlog)
        if self._owns_http:
            await self.http.aclose()


async def run_standalone(alerts: AlertSettings, telemetry: TelemetrySettings) -> None:
    """``dynoscope alerts run``: evaluate until SIGINT/SIGTERM, exposing metrics if asked."""
    from instrumentation.process import default_instance_id

    store = open_store(alerts)
    registry = CollectorRegistry()
    metrics = Catalogue(registry)
    server = None
    try:
        monitor = Monitor.build(
            alerts,
            store=store,
            metrics=metrics,
            instance=telemetry.instance_id or default_instance_id(),
            job="alerts",
        )
        if telemetry.metrics_port is not None:
            from exporters.server import MetricsServer

            token = telemetry.metrics_token
            server = MetricsServer(
                registry,
                host=telemetry.host,
                port=telemetry.metrics_port,
                token=token.get_secret_value() if token is not None else None,
            )
            server.start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stopped.set)
        await monitor.start()
        try:
            await stopped.wait()
        finally:
            await monitor.stop()
    finally:
        if server is not None:
            server.stop()
        await store.dispose()
