"""The embedded source: the process's own registries, sampled into a window.

Each ``run`` first takes a snapshot of every collector (a ``CollectorRegistry``, or the
multiprocess collector a scrape uses), keeps snapshots for ``retention``, and computes each
signal from the snapshots inside the query's window (see ``alerts.engine.window``). Series get the
target labels a Prometheus scrape would add (``instance``, ``job``), so ``by: [instance]``
means the same in both modes.

Raw PromQL cannot be computed here; such rules fail (and ``MonitorEvaluationFailing`` says
so) until ``PROMETHEUS_URL`` is set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from prometheus_client.registry import Collector

from alerts.engine.query import Exemplar, Labels, QueryFailed, QueryResult, Vector, labels_of
from alerts.engine.window import Snapshot, Window
from alerts.rules.rule import Query, RawQuery, SignalQuery
from alerts.rules.signals import signal_named
from instrumentation.names import (
    INSTANCE_CORES,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_START_TIME,
)

# Snapshots older than FINE_SECONDS are thinned to one per COARSE_SECONDS: rates over the
# short windows keep full resolution, while an hour of memory-growth history costs ~100
# snapshots instead of one per group per interval.
FINE_SECONDS = 15 * 60
COARSE_SECONDS = 60.0
TREND_METRICS: Mapping[str, frozenset[str]] = {
    "memory_growth_bytes_per_hour": frozenset({PROCESS_RESIDENT_MEMORY, PROCESS_START_TIME}),
    "capacity_hours_to_saturation": frozenset({PROCESS_CPU, INSTANCE_CORES}),
}
"""The trend signals, which look back hours, and the only metrics they read: snapshots older
than every other rule's window keep just these (six hours of forecast history is then ~360
snapshots of a handful of series, not of every histogram bucket)."""
KEPT_FOR_TRENDS = frozenset().union(*TREND_METRICS.values())


class LocalSource:
    """Compute signals from in-process metrics; no network, no Prometheus."""

    name = "local"

    def __init__(
        self,
        *,
        collectors: Iterable[Collector],
        retention: timedelta,
        target: Mapping[str, str] | None = None,
        whole: timedelta | None = None,
    ) -> None:
        """``retention``: how long snapshots are kept; ``whole``: how long they keep every
        metric (``None``: all along), older ones only those of ``TREND_METRICS``."""
        self._collectors = tuple(collectors)
        self._retention = retention.total_seconds()
        self._whole = None if whole is None else whole.total_seconds()
        self._target = dict(target if target is not None else {"instance": "local", "job": "api"})
        self._snapshots: deque[Snapshot] = deque()

    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        return tuple(self._snapshots)

    def sample(self, now: datetime) -> None:
        """Add a snapshot at ``now`` (replacing one taken at the same instant)."""
        at = now.timestamp()
        values: dict[str, dict[Labels, float]] = {}
        for collector in self._collectors:
            for family in collector.collect():
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    labels = labels_of({**sample.labels, **self._target})
                    values.setdefault(sample.name, {})[labels] = float(sample.value)
        while self._snapshots and self._snapshots[-1].at >= at:
            self._snapshots.pop()
        self._snapshots.append(Snapshot(at=at, values=values))
        while self._snapshots and self._snapshots[0].at < at - self._retention:
            self._snapshots.popleft()
        self._thin(at - FINE_SECONDS, whole=None if self._whole is None else at - self._whole)

    def _thin(self, cutoff: float, *, whole: float | None) -> None:
        kept: deque[Snapshot] = deque()
        last_bucket: float | None = None
        for snapshot in self._snapshots:
            if snapshot.at >= cutoff:
                kept.append(snapshot)
                continue
            bucket = snapshot.at // COARSE_SECONDS
            if bucket != last_bucket:
                if (
                    whole is not None
                    and snapshot.at < whole
                    and snapshot.values.keys() - KEPT_FOR_TRENDS
                ):
                    values = {k: v for k, v in snapshot.values.items() if k in KEPT_FOR_TRENDS}
                    snapshot = Snapshot(at=snapshot.at, values=values)
                kept.append(snapshot)
                last_bucket = bucket
        self._snapshots = kept

    def window(self, span: timedelta, *, now: datetime) -> Window:
        start = now.timestamp() - span.total_seconds()
        return Window(
            [s for s in self._snapshots if start <= s.at <= now.timestamp()], now=now.timestamp()
        )

    def at(self, query: SignalQuery, now: datetime) -> Vector:
        """``query`` over the snapshots already taken, as of ``now`` (none is added): the
        value a past evaluation would have seen, for charts of the window."""
        window = self.window(query.args.window, now=now)
        return Vector(signal_named(query.signal).samples(window, query.args))

    async def exemplars(
        self,
        metric: str,
        *,
        matchers: Mapping[str, str],
        start: datetime,
        end: datetime,
        seconds: float,
    ) -> list[Exemplar]:
        """The exemplars the process's registries hold now for ``metric`` series matching
        ``matchers``, observed between ``start`` and ``end``. A registry keeps the latest
        exemplar per bucket only, so these are recent examples, not every one; multiprocess
        files keep none."""
        low, high = start.timestamp(), end.timestamp()
        found: list[Exemplar] = []
        for collector in self._collectors:
            for family in collector.collect():
                for sample in family.samples:
                    example = sample.exemplar
                    if sample.name != metric or example is None:
                        continue
                    labels = {**sample.labels, **self._target}
                    at = example.timestamp if example.timestamp is not None else high
                    at = float(at)
                    if low <= at <= high and all(labels.get(k) == v for k, v in matchers.items()):
                        found.append(
                            Exemplar(
                                labels=labels_of(labels),
                                value=float(example.value),
                                at=at,
                                example=labels_of(example.labels),
                            )
                        )
        return found

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        self.sample(now)
        results: dict[Query, QueryResult] = {}
        for query in set(queries):
            if isinstance(query, RawQuery):
                results[query] = QueryFailed(
                    "raw PromQL needs the Prometheus source (PROMETHEUS_URL)"
                )
                continue
            window = self.window(query.args.window, now=now)
            try:
                results[query] = Vector(signal_named(query.signal).samples(window, query.args))
            except (ArithmeticError, ValueError) as exc:
                results[query] = QueryFailed(f"local: {query.signal}: {type(exc).__name__}")
        return results
