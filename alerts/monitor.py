"""The assembled alert engine: rules, sources, store, notifiers and scheduler, from settings.

``Monitor.build`` wires the parts the settings ask for:

- ``PROMETHEUS_URL`` set: queries go to Prometheus; unset (embedded mode): to a
  ``LocalSource`` over the process's own registries;
- ``ALERT_RULES_PATH``: rule files (default: the shipped ``alerts/rules/default.yml``);
- receivers: console always, plus the webhook when ``ALERT_WEBHOOK_URL`` is set.

``dynoscope alerts run`` runs one on its own (``run_standalone``); in fully embedded mode (no
Prometheus, no Redis) one API process per database runs one inside its lifespan
(``alerts.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.evaluator import Evaluator
from alerts.loader import load_rules, rule_paths
from alerts.notifiers import ConsoleNotifier, Notifier, WebhookConfig, WebhookNotifier
from alerts.outbox import Outbox
from alerts.rule import RuleSet, SignalQuery
from alerts.scheduler import Clock, Scheduler, utc_now
from alerts.sources import LocalSource, PrometheusSource, Source
from alerts.store import Store
from api.settings import Settings
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope.alerts")


def retention(rules: RuleSet) -> timedelta:
    """How long the local source keeps samples: the longest window plus a margin."""
    windows = [r.query.args.window for r in rules.rules if isinstance(r.query, SignalQuery)]
    intervals = [g.interval for g in rules.groups]
    return max(windows, default=timedelta(minutes=5)) + 2 * max(intervals, default=timedelta(0))


@dataclass
class Monitor:
    """A running (or ready to run) alert engine."""

    rules: RuleSet
    store: Store
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
        settings: Settings,
        *,
        engine: AsyncEngine,
        metrics: Catalogue | None = None,
        collectors: Iterable[Collector] = (),
        instance: str = "local",
        job: str = "api",
        clock: Clock = utc_now,
        http: httpx.AsyncClient | None = None,
    ) -> Monitor:
        """Wire an engine for ``settings``; raises ``RuleFileError`` on bad rules."""
        rules = load_rules(rule_paths(settings.alert_rules_path))
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
        if settings.alert_webhook_url is not None:
            config = WebhookConfig(url=settings.alert_webhook_url)
            notifiers["webhook"] = WebhookNotifier(config, client=client)
        store = Store(engine)
        outbox = Outbox(store=store, notifiers=notifiers, metrics=metrics)
        evaluator = Evaluator(
            source=source,
            self_source=self_source,
            store=store,
            receivers=outbox.receivers,
            metrics=metrics,
        )
        scheduler = Scheduler(
            groups=rules.groups, evaluator=evaluator, outbox=outbox, metrics=metrics, clock=clock
        )
        return cls(
            rules=rules,
            store=store,
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
        return (
            f"{len(self.rules.rules)} rules in {len(self.rules.groups)} groups, "
            f"source {self.source.name}, receivers {receivers}"
        )

    async def start(self, *, immediately: bool = False) -> None:
        """Start evaluating on the running loop."""
        self.evaluator.prepare(self.rules.rules)
        # A first snapshot now, so a rate over the first window has a starting point.
        self.self_source.sample(self.scheduler.clock())
        self.scheduler.start(immediately=immediately)
        log.info("alert engine: %s", self.describe())

    async def stop(self) -> None:
        await self.scheduler.stop()
        if self._owns_http:
            await self.http.aclose()


async def run_standalone(settings: Settings) -> None:
    """``dynoscope alerts run``: evaluate until SIGINT/SIGTERM, exposing metrics if asked."""
    from api.db import create_engine
    from api.migrate import upgrade
    from instrumentation.process import default_instance_id

    engine = create_engine(settings)
    registry = CollectorRegistry()
    metrics = Catalogue(registry)
    server = None
    try:
        await upgrade(engine)
        monitor = Monitor.build(
            settings,
            engine=engine,
            metrics=metrics,
            instance=settings.instance_id or default_instance_id(),
            job="alerts",
        )
        if settings.metrics_port is not None:
            from exporters.server import MetricsServer

            token = settings.metrics_token
            server = MetricsServer(
                registry,
                host=settings.host,
                port=settings.metrics_port,
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
        await engine.dispose()
