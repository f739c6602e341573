"""``dynoscope report``: the scaling-health scorecard, read from Prometheus.

    report = await read_report(PrometheusSource(url=url, client=client), since=timedelta(hours=1))
    print(format_report(report))

Every number is one instant query over the last ``since``: the alert signals' own PromQL
(``alerts/rules/signals.py``) for the scorecard, and for the capacity estimate the request rate
and the rate of the request-duration sum per instance of the ``api`` scrape job (their
ratio is the mean latency; the latter is Little's concurrency). A query with no series is a
line saying "no data"; a Prometheus that does not answer is a ``ReportError``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from alerts.engine.query import Vector
from alerts.engine.sources.prometheus import PrometheusSource
from alerts.errors import QueryError, ReportError
from alerts.rules.duration import format_duration
from alerts.rules.signal import RestartGuard, SignalArgs, TrafficGuard
from alerts.rules.signals import signal_named
from instrumentation.names import HTTP_SERVER_REQUEST_DURATION
from ops.scorecard import (
    CACHE_HIT_RATIO,
    ERROR_RATIO,
    MEMORY_GROWTH,
    P95_LATENCY,
    QUERIES_PER_REQUEST,
    Capacity,
    Line,
    Target,
    capacity,
    capacity_lines,
    format_value,
    line,
)

API_JOB = "api"
"""The scrape job of the API instances (``docs/metrics.md``); capacity counts only them."""


@dataclass(frozen=True)
class Check:
    """A scorecard row: the signal it reads, how it is shown and judged."""

    title: str
    signal: str
    unit: str
    target: Target | None
    params: Any = None
    by_instance: bool = False


CHECKS = (
    Check("requests", "http_requests_per_second", "/s", None),
    Check("latency p95", "http_latency_p95_seconds", "s", P95_LATENCY),
    Check("error ratio (5xx)", "http_error_ratio", "ratio", ERROR_RATIO, TrafficGuard()),
    Check("cache hit ratio", "cache_hit_ratio", "ratio", CACHE_HIT_RATIO, TrafficGuard()),
    Check("database queries", "db_queries_per_second", "/s", None),
    Check("queries per request", "db_queries_per_request", "", QUERIES_PER_REQUEST),
    Check(
        "memory growth",
        "memory_growth_bytes_per_hour",
        "B/h",
        MEMORY_GROWTH,
        RestartGuard(),
        by_instance=True,
    ),
)


@dataclass(frozen=True)
class Report:
    since: timedelta
    at: datetime
    lines: tuple[Line, ...]
    capacity: Capacity

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form; its keys are a contract (tests/ops/test_report.py). Each value
        is in the unit its line names (``ratio``: 0 to 1; ``s``; ``B/h``; ``/s``)."""
        return {
            "since": format_duration(self.since),
            "at": self.at.isoformat(),
            "lines": [asdict(each) for each in self.lines],
            "capacity": asdict(self.capacity),
        }


async def read_report(source: PrometheusSource, *, since: timedelta) -> Report:
    """Ask Prometheus for every line at one instant; ``ReportError`` if it does not answer."""
    now = datetime.now(UTC)
    ask = _asker(source, now)
    await ask("vector(1)")  # reachable at all: better one clear error than a page of them
    lines: list[Line] = []
    for check in CHECKS:
        lines.extend(await _check_lines(ask, check, since))
    window = format_duration(since)
    api = f'{{job="{API_JOB}"}}[{window}]'
    rates = await ask(f"sum by (instance) (rate({HTTP_SERVER_REQUEST_DURATION}_count{api}))")
    busy = await ask(f"sum by (instance) (rate({HTTP_SERVER_REQUEST_DURATION}_sum{api}))")
    plan = capacity(rates=_by_instance(rates), busy=_by_instance(busy))
    lines.extend(capacity_lines(plan))
    return Report(since=since, at=now, lines=tuple(lines), capacity=plan)


Ask = Callable[[str], Awaitable[Vector]]


async def read_report_from(url: str, *, since: timedelta) -> Report:
    """``read_report`` on a client of its own, closed afterwards."""
    async with httpx.AsyncClient() as client:
        return await read_report(PrometheusSource(url=url, client=client), since=since)


def _asker(source: PrometheusSource, now: datetime) -> Ask:
    async def ask(promql: str) -> Vector:
        try:
            return await source.instant(promql, now=now)
        except QueryError as exc:
            raise ReportError(f"Prometheus at {source.url} did not answer: {exc}") from None

    return ask


async def _check_lines(ask: Ask, check: Check, since: timedelta) -> list[Line]:
    by = ("instance",) if check.by_instance else ()
    args = SignalArgs(by=by, window=since, **({"params": check.params} if check.params else {}))
    vector = await ask(signal_named(check.signal).promql(args))
    if not check.by_instance:
        value = vector.samples[0].value if vector.samples else None
        return [line(check.title, value, unit=check.unit, target=check.target)]
    found = [
        line(
            check.title,
            sample.value,
            unit=check.unit,
            target=check.target,
            instance=dict(sample.labels).get("instance", "?"),
        )
        for sample in vector.samples
    ]
    return found or [line(check.title, None, unit=check.unit, target=check.target)]


def _by_instance(vector: Vector) -> Mapping[str, float]:
    return {dict(sample.labels).get("instance", "?"): sample.value for sample in vector.samples}


def format_report(report: Report) -> str:
    """An aligned table, one line per check, then how the capacity estimate was made."""
    rows = [("check", "value", "target", "verdict")]
    for each in report.lines:
        title = f"{each.check} {each.instance}" if each.instance else each.check
        rows.append((title, _shown(each), each.target, each.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    plan = report.capacity
    when = report.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    notes = [
        f"Scaling health over the last {format_duration(report.since)} (Prometheus, {when})",
        "",
        *table,
        "",
        "concurrency = request rate x mean latency per instance (Little's law), against the",
        f"plan of ~{plan.planned_per_instance} concurrent users per instance:",
        *(
            f"  {load.instance}: {load.requests_per_second:.2f}/s x "
            f"{format_value(load.mean_latency_seconds, 's')} = {load.concurrency:.2f},"
            f" headroom {load.headroom:.1f}"
            for load in plan.instances
        ),
    ]
    return "\n".join(notes)


def _shown(each: Line) -> str:
    if each.check == "instances needed" and each.value is not None:
        return f"{each.value:g}"
    return format_value(each.value, each.unit)
