"""Samples of in-process metrics over a time window, and the arithmetic signals need.

The local source keeps ``Snapshot``s of the process's registries; a ``Window`` is the slice
of them a query looks at. The functions mirror PromQL closely enough that a signal computed
here agrees with the same signal computed by Prometheus (see tests/alerts/test_agreement.py):
``rates`` ≈ ``sum by (...) (rate(x[w]))`` without Prometheus's extrapolation to the window's
edges, ``histogram_quantile`` is Prometheus's bucket interpolation, ``slopes`` is ``deriv``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerts.engine.query import Labels

Series = Mapping[Labels, float]
Matcher = Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True)
class Snapshot:
    """Every sample of the sampled registries at one moment (unix seconds)."""

    at: float
    values: Mapping[str, Series]


def project(labels: Labels, names: Iterable[str]) -> Labels:
    """Keep only ``names`` of ``labels``, like PromQL's ``by (...)``."""
    wanted = set(names)
    return tuple(pair for pair in labels if pair[0] in wanted)


class Window:
    """Snapshots from oldest to newest that fall inside one query's window."""

    def __init__(self, snapshots: Sequence[Snapshot], *, now: float) -> None:
        self.snapshots = tuple(snapshots)
        self.now = now

    @property
    def elapsed(self) -> float:
        """Seconds between the first and last snapshot; 0 when a rate cannot be taken."""
        if len(self.snapshots) < 2:
            return 0.0
        return self.snapshots[-1].at - self.snapshots[0].at

    @property
    def extent(self) -> float:
        """Seconds the snapshots stand for: ``elapsed`` plus one sampling interval, as
        Prometheus extrapolates a range to its edges when samples reach them."""
        if len(self.snapshots) < 2:
            return 0.0
        return self.elapsed * len(self.snapshots) / (len(self.snapshots) - 1)

    def latest(self, name: str) -> Series:
        return self.snapshots[-1].values.get(name, {}) if self.snapshots else {}

    def increases(
        self, name: str, *, by: Iterable[str], where: Matcher | None = None
    ) -> dict[Labels, float]:
        """Counter increase per ``by`` group between the first and last snapshot.

        A series missing from the first snapshot was created later, and in-process counters
        start at zero, so its whole value counts; a value lower than before is a reset.
        """
        if self.elapsed <= 0:
            return {}
        first = self.snapshots[0].values.get(name, {})
        totals: dict[Labels, float] = defaultdict(float)
        by = tuple(by)
        for labels, value in self.latest(name).items():
            if where is not None and not where(dict(labels)):
                continue
            before = first.get(labels, 0.0)
            totals[project(labels, by)] += value - before if value >= before else value
        return dict(totals)

    def rates(
        self, name: str, *, by: Iterable[str], where: Matcher | None = None
    ) -> dict[Labels, float]:
        """Per-second increase per ``by`` group (``sum by (...) (rate(name[w]))``)."""
        elapsed = self.elapsed
        return {
            key: value / elapsed for key, value in self.increases(name, by=by, where=where).items()
        }

    def slopes(self, name: str) -> dict[Labels, float]:
        """Least-squares slope per second of each gauge series (PromQL ``deriv``)."""
        points: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
        for snapshot in self.snapshots:
            for labels, value in snapshot.values.get(name, {}).items():
                points[labels].append((snapshot.at, value))
        return {
            labels: slope
            for labels, series in points.items()
            if (slope := _slope(series)) is not None
        }


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    # Centre the times first: unix timestamps squared lose precision in floats.
    origin = points[0][0]
    xs = [t - origin for t, _ in points]
    ys = [v for _, v in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    variance = sum((x - mean_x) ** 2 for x in xs)
    if variance == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / variance


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float:
    """Prometheus's ``histogram_quantile`` over cumulative ``{upper bound: count}`` buckets.

    >>> histogram_quantile(0.5, {0.1: 50, 0.2: 100, math.inf: 100})
    0.1
    """
    if quantile < 0:
        return -math.inf
    if quantile > 1:
        return math.inf
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return math.nan
    counts = []
    running = 0.0
    for bound in bounds:
        # Increases of separately scraped buckets can be slightly non-monotonic.
        running = max(running, buckets[bound])
        counts.append(running)
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = quantile * observations
    # The first non-empty bucket reaching the rank: for quantile 0 an empty first bucket
    # "reaches" rank 0 too, and interpolating inside it would divide by zero.
    index = next(i for i, count in enumerate(counts) if count >= rank and count > 0)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, count = 0.0, counts[index]
    if index > 0:
        start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    return start + (bounds[index] - start) * (rank / count)


def bucket_quantiles(increases: Mapping[Labels, float], *, quantile: float) -> dict[Labels, float]:
    """Group ``le``-labelled bucket increases by their other labels and take the quantile."""
    groups: dict[Labels, dict[float, float]] = defaultdict(dict)
    for labels, value in increases.items():
        le = dict(labels).get("le")
        if le is None:
            continue
        rest = tuple(pair for pair in labels if pair[0] != "le")
        bound = math.inf if le == "+Inf" else float(le)
        groups[rest][bound] = groups[rest].get(bound, 0.0) + value
    return {labels: histogram_quantile(quantile, buckets) for labels, buckets in groups.items()}
