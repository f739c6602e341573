"""The assembled alert engine: rules, sources, memory, store, notifiers and scheduler.

``Monitor.build`` wires the parts the settings ask for:

- ``PROMETHEUS_URL`` set: queries go to Prometheus; unset (embedded mode): to a
  ``LocalSource`` over the process's own registries;
- ``ALERT_RULES_PATH``: rule files (default: the shipped ``alerts/rules/default.yml``);
- ``ALERT_STORE_URL``: the engine's own store, written behind (``alerts.store.writer``);
- receivers: console always, plus those of ``ALERT_RECEIVERS_PATH`` (``alerts.delivery.receivers``)
  and the webhook when ``ALERT_WEBHOOK_URL`` is set, routed by labels;
- leadership: by default a lease in the store (``alerts.store.lease``, ``ALERT_LEASE_SECONDS``), so
  of several engines on one store exactly one evaluates and sends and a standby takes over
  when it dies; the in-process engine passes a ``HostLease`` (its lock file decides).

Alert state lives in memory (``alerts.engine.ledger``) while the engine runs, so evaluation and
delivery never wait on a database: not the one the service uses, which is what the engine
watches, and not the store, which may be slow or down too.

``dynoscope alerts run`` runs one on its own (``alerts.engine.standalone``); in fully
embedded mode (no Prometheus, no Redis) one API process per database runs one inside its
lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.delivery.inhibition import DEFAULT_RULES, Inhibitor, InhibitRule
from alerts.delivery.links import Links
from alerts.delivery.notifiers.notifier import Notifier
from alerts.delivery.outbox import Outbox
from alerts.delivery.resend import Resender
from alerts.delivery.retry import RetryPolicy
from alerts.delivery.routing import Router
from alerts.engine.context import Context, ExemplarSource
from alerts.engine.election import Election, WithoutStore
from alerts.engine.evaluator import Evaluator
from alerts.engine.leadership import Leadership
from alerts.engine.ledger import Ledger
from alerts.engine.peers import Peers
from alerts.engine.scheduler import Clock, Scheduler, utc_now
from alerts.engine.sources import LocalSource, PrometheusSource, Source
from alerts.engine.sources.local import TREND_METRICS
from alerts.engine.state import Alert, AlertState
from alerts.metrics import EngineMetrics
from alerts.rules.loader import load_rules, rule_paths
from alerts.rules.rule import RuleSet, SignalQuery
from alerts.settings import AlertSettings
from alerts.silences.silence import Silences
from alerts.silences.store import SilenceStore
from alerts.store.lease import Lease, StoreLease
from alerts.store.migrate import upgrade
from alerts.store.store import HistoryEntry, Store, create_store_engine
from alerts.store.writer import StorePolicy, StoreWriter
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope.alerts")


def retention(rules: RuleSet, *, trends: bool = True) -> timedelta:
    """How long the local source keeps samples: the longest window plus a margin
    (``trends=False``: of the rules on other signals than the trends of ``TREND_METRICS``,
    which is how long snapshots keep every metric)."""
    windows = [
        r.query.args.window
        for r in rules.rules
        if isinstance(r.query, SignalQuery) and (trends or r.query.signal not in TREND_METRICS)
    ]
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
    metrics: EngineMetrics
    http: httpx.AsyncClient
    lease: Lease
    resender: Resender
    silences: Silences
    silence_store: SilenceStore
    election: Election | None = None
    peers: Peers | None = None
    _owns_http: bool = field(default=False, repr=False)
    _campaign: asyncio.Task[None] | None = field(default=None, repr=False)
    leadership: Leadership = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.leadership = Leadership(self)

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
        lease: Lease | None = None,
    ) -> Monitor:
        """Wire an engine for ``settings`` on the store's engine ``store`` (migrated at start),
        counting on the registry of ``metrics`` (the app's telemetry catalogue, or a new one);
        raises ``RuleFileError`` on bad rules. Without ``lease`` it competes for the store's
        lease (``StoreLease``) with every other engine on that store."""
        rules = load_rules(rule_paths(settings.rules_path))
        own = EngineMetrics.of(metrics if metrics is not None else Catalogue(CollectorRegistry()))
        client = http if http is not None else httpx.AsyncClient()
        source, self_source, examples = _sources(
            settings,
            metrics=own,
            collectors=collectors,
            keep=retention(rules),
            whole=retention(rules, trends=False),
            target={"instance": instance, "job": job},
            client=client,
        )
        ledger = Ledger()
        silence_store = SilenceStore(store)
        silences = Silences(silence_store.current, timeout=settings.store_timeout_seconds)
        held: Lease = lease if lease is not None else StoreLease(store, ttl=settings.lease_seconds)
        receivers = settings.receivers()
        notifiers = receivers.notifiers(client=client)
        outbox = _outbox(
            settings, notifiers, receivers.router, ledger=ledger, metrics=own, lease=held,
            silences=silences, inhibit=receivers.inhibit_rules,
        )  # fmt: skip
        stored = Store(store)
        writer = StoreWriter(
            lease=held, store=stored, ledger=ledger, outbox=outbox, metrics=own,
            rules=[rule.name for rule in rules.rules], migrate=lambda: upgrade(store),
            policy=StorePolicy(timeout=settings.store_timeout_seconds),
        )  # fmt: skip
        timeout = settings.context_timeout_seconds
        evaluator = Evaluator(
            source=source, self_source=self_source, ledger=ledger, outbox=outbox, metrics=own,
            context=Context(source=examples, timeout=timeout, metrics=own) if timeout else None,
        )  # fmt: skip
        resender = Resender(ledger=ledger, outbox=outbox, notifiers=notifiers)
        return cls(
            rules=rules, ledger=ledger, store=stored, writer=writer, source=source,
            self_source=self_source, evaluator=evaluator, outbox=outbox, metrics=own,
            http=client, lease=held, resender=resender, silences=silences,
            silence_store=silence_store, _owns_http=http is None, peers=_peers(settings, client),
            scheduler=Scheduler(
                groups=rules.groups, evaluator=evaluator, outbox=outbox, writer=writer,
                clock=clock, resend=resender, silences=silences,
            ),
        )  # fmt: skip

    def describe(self) -> str:
        receivers = ", ".join(self.outbox.receivers)
        store = self.store.engine.url.render_as_string(hide_password=True)
        return (
            f"{len(self.rules.rules)} rules in {len(self.rules.groups)} groups, "
            f"source {self.source.name}, receivers {receivers}, store {store}"
        )

    async def current(self) -> list[Alert]:
        """Pending and firing alerts as the leader knows them: from memory (the authority
        while this engine leads); a standby (which knows nothing itself) reads the store the
        leader keeps."""
        if self.leading:
            return self.ledger.active()
        return await self.store.active()

    async def history(self, *, limit: int = 100) -> list[HistoryEntry]:
        """The latest transitions: from the store, or from memory while it is down (a
        standby reads the store only)."""
        if not self.leading:
            return await self.store.history(limit=limit)
        if self.writer.up and not self.ledger.backlog:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    return await self.store.history(limit=limit)
        return list(reversed(self.ledger.recent))[:limit]

    @property
    def leading(self) -> bool:
        """Whether this engine evaluates and sends (a standby waits for the lease)."""
        return self.election is None or self.election.leading

    async def start(self, *, immediately: bool = False) -> None:
        """Start on the running loop: evaluate at once when this engine may lead (always with
        a ``HostLease``; with a ``StoreLease`` when the lease is free), else wait as standby."""
        self.evaluator.prepare(self.rules.rules)
        now = self.scheduler.clock()
        # A first snapshot now, so a rate over the first window has a starting point.
        self.self_source.sample(now)
        log.info("alert engine: %s", self.describe())
        leadership = self.leadership
        leadership.immediately = immediately
        if not isinstance(self.lease, StoreLease):
            if not await self.writer.connect(now=now):
                log.error("alert engine starts without its store; it is tried again every second")
            leadership.act()
            self.metrics.scheduler_leader.set(1)
            return
        self.election = Election(
            self.lease,
            on_elected=leadership.elected,
            on_deposed=leadership.deposed,
            without_store=WithoutStore(
                on_degraded=leadership.degraded,
                on_standby=leadership.follow,
                on_unreachable=leadership.unreachable,
                peers_see_store=self.peers.see_store if self.peers is not None else None,
            ),
            prepare=self.writer.migrate,
            metrics=self.metrics,
        )
        await self.election.step()
        if not self.election.leading:
            log.info("alert engine waits as standby (lease held by another engine)")
        leadership.immediately = True  # a later takeover continues at once: no cycle skipped
        self._campaign = asyncio.create_task(self.election.run())

    def status(self) -> dict[str, object]:
        """What peers are told (``alerts.engine.peers``)."""
        return self.leadership.status()

    def decisions(self, since: datetime) -> dict[str, Any]:
        """What this engine tells a leader catching up after a store outage."""
        return self.leadership.decisions(since)

    async def stop(self) -> None:
        """Stop evaluating, write what is left (briefly), give up the lease, and close the
        HTTP client."""
        if self._campaign is not None:
            self._campaign.cancel()
            await asyncio.gather(self._campaign, return_exceptions=True)
            self._campaign = None
        if self.leading:
            await self.leadership.halt()
            # A store never reached is not written now either: without its state loaded, a
            # write would replace stored alerts (and their timers) with this process's view.
            written = self.writer.loaded and await self.writer.flush(now=self.scheduler.clock())
            if not written and self.ledger.backlog:
                log.error("alert engine stopped with %d unwritten change(s)", self.ledger.backlog)
        if self.election is not None:
            await self.election.resign()
        self.metrics.scheduler_leader.set(0)
        if self._owns_http:
            await self.http.aclose()


def _quiet_httpx() -> None:
    quiet = logging.getLogger("httpx")
    if quiet.level == logging.NOTSET:
        # httpx logs every request at INFO: dozens of Prometheus queries per cycle.
        quiet.setLevel(logging.WARNING)


def _sources(
    settings: AlertSettings,
    *,
    metrics: EngineMetrics,
    collectors: Iterable[Collector],
    keep: timedelta,
    whole: timedelta,
    target: dict[str, str],
    client: httpx.AsyncClient,
) -> tuple[Source, LocalSource, ExemplarSource]:
    """Where rules get their numbers (Prometheus, or the sampled registries), where the
    engine's own rules do (its registry), and where context examples come from."""
    _quiet_httpx()
    if settings.prometheus_url:
        prometheus = PrometheusSource(url=settings.prometheus_url, client=client)
        own = LocalSource(collectors=[metrics.registry], retention=keep, target=target, whole=whole)
        return prometheus, own, prometheus
    sampled = list(collectors) or [metrics.registry]
    local = LocalSource(collectors=sampled, retention=keep, target=target, whole=whole)
    return local, local, local


def _peers(settings: AlertSettings, client: httpx.AsyncClient) -> Peers | None:
    """The other engines, asked within a sixth of the lease (at most a second)."""
    if not settings.peer_urls:
        return None
    timeout = min(1.0, settings.lease_seconds / 6) if settings.lease_seconds > 0 else 1.0
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    return Peers(settings.peer_urls, client=client, timeout=timeout, token=token)


def _outbox(
    settings: AlertSettings,
    notifiers: Mapping[str, Notifier],
    router: Router,
    *,
    ledger: Ledger,
    metrics: EngineMetrics,
    lease: Lease,
    silences: Silences,
    inhibit: tuple[InhibitRule, ...] | None,
) -> Outbox:
    """Deliveries never given up by count, only by age, retried with jitter so that engines
    do not retry at once; links as the settings' templates say; inhibition by the receivers
    file's rules, or the shipped ones, against the alerts firing now."""
    retry = RetryPolicy(
        jitter=0.2,
        max_attempts=None,
        max_age=timedelta(seconds=settings.delivery_max_age_seconds),
    )
    links = Links(
        grafana=settings.grafana_url_template,
        trace=settings.trace_url_template,
        runbook_base=settings.runbook_base_url,
    )
    inhibitor = Inhibitor(
        DEFAULT_RULES if inhibit is None else inhibit,
        firing=lambda: [a for a in ledger.active() if a.state is AlertState.FIRING],
    )
    return Outbox(
        notifiers=notifiers, ledger=ledger, metrics=metrics, lease=lease, router=router,
        retry=retry, silences=silences, links=links, inhibitor=inhibitor,
    )  # fmt: skip
