"""Context for on-call, looked up when an alert fires: example slow traces, slowest statements.

    context = Context(source=PrometheusSource(url=..., client=client), timeout=2.0)
    notifications = await context.attach([(rule, notification), ...], now=now)

For an alert of a latency signal (``http_latency_pNN_seconds``) the example traces are the
exemplars of ``http_server_request_duration_seconds`` in the alert's window and series (its
``by`` labels), slowest first; for ``db_slow_queries_per_minute`` they are those of
``db_client_operation_duration_seconds``. Both kinds also get the slowest statements by
fingerprint, from the statement-duration exemplars (``fingerprint`` and ``trace_id``). At most
``limit`` of each.

The lookup never costs a notification: it is bounded by ``timeout`` in all, and a failure (or
a source that has no exemplars) leaves the notification as it was. Failures are counted in
``dynoscope_dependency_errors_total{dependency="alert_context"}`` and logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from alerts.engine.query import Examples, Exemplar, SlowQuery
from alerts.engine.state import Notification
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Rule, SignalQuery

log = logging.getLogger("dynoscope.alerts")

HTTP_HISTOGRAM = "http_server_request_duration_seconds_bucket"
DB_HISTOGRAM = "db_client_operation_duration_seconds_bucket"
SLOW_QUERY_SIGNAL = "db_slow_queries_per_minute"
DEPENDENCY = "alert_context"
LIMIT = 5
# Labels the statement-duration series have: an alert's other labels (route) do not filter it.
_DB_LABELS = frozenset({"instance", "job", "operation", "table"})


class ExemplarSource(Protocol):
    """A metric source that keeps example observations (both shipped sources do)."""

    name: str

    async def exemplars(
        self,
        metric: str,
        *,
        matchers: Mapping[str, str],
        start: datetime,
        end: datetime,
        seconds: float,
    ) -> list[Exemplar]: ...


def kind(rule: Rule) -> str | None:
    """``latency``, ``slow_query`` or None: whether an alert of ``rule`` gets context."""
    if not isinstance(rule.query, SignalQuery):
        return None
    if rule.query.signal.startswith("http_latency_p"):
        return "latency"
    if rule.query.signal == SLOW_QUERY_SIGNAL:
        return "slow_query"
    return None


def trace_ids(exemplars: Iterable[Exemplar], *, limit: int = LIMIT) -> tuple[str, ...]:
    """The trace ids of the slowest exemplars, each once.

    >>> fast, slow = (("trace_id", "a"),), (("trace_id", "b"),)
    >>> trace_ids([Exemplar((), 0.2, 1.0, fast), Exemplar((), 0.9, 1.0, slow)])
    ('b', 'a')
    """
    ids: list[str] = []
    for exemplar in sorted(exemplars, key=lambda e: e.value, reverse=True):
        if exemplar.trace_id and exemplar.trace_id not in ids:
            ids.append(exemplar.trace_id)
    return tuple(ids[:limit])


def slowest_queries(
    exemplars: Iterable[Exemplar], *, prefer: Iterable[str] = (), limit: int = LIMIT
) -> tuple[SlowQuery, ...]:
    """The slowest statements by fingerprint (those in a ``prefer`` trace first)."""
    preferred = set(prefer)
    best: dict[str, SlowQuery] = {}
    for exemplar in exemplars:
        fingerprint = dict(exemplar.example).get("fingerprint")
        if not fingerprint:
            continue
        known = best.get(fingerprint)
        if known is None or exemplar.value > known.seconds:
            series = dict(exemplar.labels)
            best[fingerprint] = SlowQuery(
                fingerprint=fingerprint,
                operation=series.get("operation", ""),
                table=series.get("table", ""),
                seconds=exemplar.value,
                trace_id=exemplar.trace_id,
            )
    ranked = sorted(best.values(), key=lambda q: (q.trace_id in preferred, q.seconds), reverse=True)
    return tuple(ranked[:limit])


class Context:
    """Looks up ``Examples`` for firing alerts of latency and slow-query rules."""

    def __init__(
        self,
        *,
        source: ExemplarSource,
        timeout: float = 2.0,
        limit: int = LIMIT,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self._source = source
        self._timeout = timeout
        self._limit = limit
        self._metrics = metrics
        self._failing = False

    async def attach(
        self, pairs: Sequence[tuple[Rule, Notification]], *, now: datetime
    ) -> list[Notification]:
        """The notifications, firing ones of latency and slow-query rules with context."""
        wanted = [
            index
            for index, (rule, n) in enumerate(pairs)
            if n.status == "firing" and kind(rule) is not None
        ]
        found: list[Examples | BaseException] = []
        if wanted:
            found = await self._gather([pairs[i] for i in wanted], now=now)
        result = [notification for _, notification in pairs]
        for index, examples in zip(wanted, found, strict=True):
            if isinstance(examples, BaseException):
                self._failed(examples)
            else:
                self._failing = False
                if examples:
                    result[index] = replace(result[index], context=examples)
        return result

    async def _gather(
        self, pairs: Sequence[tuple[Rule, Notification]], *, now: datetime
    ) -> list[Examples | BaseException]:
        lookups = [self.examples(rule, n, now=now) for rule, n in pairs]
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.gather(*lookups, return_exceptions=True)
        except TimeoutError as exc:
            return [exc] * len(pairs)

    async def examples(self, rule: Rule, notification: Notification, *, now: datetime) -> Examples:
        """Example traces and slowest statements for one alert; raises on a source failure."""
        if not isinstance(rule.query, SignalQuery):
            return Examples()
        args = rule.query.args
        labels = dict(notification.alert.labels)
        series = {name: labels[name] for name in args.by if name in labels}
        on_db = {name: value for name, value in series.items() if name in _DB_LABELS}
        start = now - args.window
        statements = await self._exemplars(DB_HISTOGRAM, on_db, start=start, end=now)
        if kind(rule) == "slow_query":
            ids = trace_ids(statements, limit=self._limit)
            return Examples(ids, slowest_queries(statements, limit=self._limit))
        requests = await self._exemplars(HTTP_HISTOGRAM, series, start=start, end=now)
        ids = trace_ids(requests, limit=self._limit)
        return Examples(ids, slowest_queries(statements, prefer=ids, limit=self._limit))

    async def _exemplars(
        self, metric: str, matchers: Mapping[str, str], *, start: datetime, end: datetime
    ) -> list[Exemplar]:
        return await self._source.exemplars(
            metric, matchers=matchers, start=start, end=end, seconds=self._timeout
        )

    def _failed(self, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.dependency_errors.labels(dependency=DEPENDENCY).inc()
        if not self._failing:
            # Once per outage: the source being down is already loud in its own alerts.
            log.warning(
                "alert context from %s unavailable, notifications go without it: %s",
                self._source.name,
                str(exc) or type(exc).__name__,
            )
        self._failing = True
