"""``dynoscope report``: the scaling-health scorecard, from Prometheus or from an API's own
in-process engine.

    report = await read_report_from("http://prometheus:9090", since=timedelta(hours=1))
    report = await read_report_of_engine("http://127.0.0.1:8000", token=t, since=...)
    print(format_report(report))

Every number is one alert signal (``alerts/rules/signals.py``) over the last ``since``, asked
at one instant of a ``Source``: Prometheus runs the signals' PromQL, the engine computes them
from its sampled window (``POST /alerts/query``). The capacity estimate takes the request rate
and the busy seconds per second (the rate of the request-duration sum) per instance of the
``api`` scrape job: their ratio is the mean latency, the latter Little's concurrency. The CPU
model (``ops/capacity_model.py``) takes each instance's utilisation, usable cores and request
rate: CPU per request, the saturation rate and the rate at which the p95 reaches 200 ms; and
the fleet's instances needed at 70 % utilisation (the ``instances_needed`` signal). A query
with no series is a line saying "no data"; a source that does not answer is a
``ReportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from alerts.engine.query import QueryFailed, QueryResult, Vector
from alerts.engine.sources import PrometheusSource, Source
from alerts.errors import QueryError, ReportError
from alerts.rules.capacity import CapacityTarget
from alerts.rules.duration import format_duration
from alerts.rules.rule import SignalQuery
from alerts.rules.signal import RestartGuard, SignalArgs, TrafficGuard
from ops.engine_source import EngineSource
from ops.scorecard import (
    CACHE_HIT_RATIO,
    ERROR_RATIO,
    MEMORY_GROWTH,
    P95_LATENCY,
    QUERIES_PER_REQUEST,
    Capacity,
    CapacityModel,
    Line,
    Target,
    capacity,
    capacity_lines,
    capacity_model,
    format_value,
    line,
    model_lines,
)

API_JOB = "api"
"""The scrape job of the API instances (``docs/metrics.md``); capacity counts only them."""
TARGET = ("instance", "job")


@dataclass(frozen=True)
class Check:
    """A scorecard row: the signal it reads, how it is shown and judged."""

    title: str
    signal: str
    unit: str
    target: Target | None
    params: Any = None
    by: tuple[str, ...] = ()


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
        by=("instance",),
    ),
)


@dataclass(frozen=True)
class Report:
    since: timedelta
    at: datetime
    lines: tuple[Line, ...]
    capacity: Capacity
    model: CapacityModel
    origin: str = "Prometheus"
    """Where the numbers come from: ``Prometheus at URL``, ``the engine of URL``."""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form; its keys are a contract (tests/ops/test_report.py). Each value
        is in the unit its line names (``ratio``: 0 to 1; ``s``; ``B/h``; ``/s``)."""
        return {
            "since": format_duration(self.since),
            "at": self.at.isoformat(),
            "origin": self.origin,
            "lines": [asdict(each) for each in self.lines],
            "capacity": asdict(self.capacity),
            "model": asdict(self.model),
        }


async def read_report(source: Source, *, since: timedelta, origin: str) -> Report:
    """Ask ``source`` (Prometheus, or an API's engine) every line at one instant;
    ``ReportError`` naming ``origin`` if it does not answer."""
    now = datetime.now(UTC)
    queries = {check: _query(check, since) for check in CHECKS}
    rates = _query(Check("", "http_requests_per_second", "", None, by=TARGET), since)
    busy = _query(Check("", "http_busy_seconds_per_second", "", None, by=TARGET), since)
    utilisation = _query(Check("", "capacity_utilization", "", None, by=TARGET), since)
    cores = _query(Check("", "instance_cores", "", None, by=TARGET), since)
    needed = _query(Check("", "instances_needed", "", None, CapacityTarget()), since)
    model_queries = [utilisation, cores, needed]
    answers = await source.run([*queries.values(), rates, busy, *model_queries], now=now)
    for answer in answers.values():
        if isinstance(answer, QueryFailed):
            raise ReportError(f"{origin} did not answer: {answer.reason}")
    lines: list[Line] = []
    for check, query in queries.items():
        lines.extend(_check_lines(check, _vector(answers[query])))
    plan = capacity(rates=_api(answers[rates]), busy=_api(answers[busy]))
    lines.extend(capacity_lines(plan))
    fleet = _vector(answers[needed]).samples
    model = capacity_model(
        utilisation=_api(answers[utilisation]),
        cores=_api(answers[cores]),
        rates=_api(answers[rates]),
        needed=fleet[0].value if fleet else None,
    )
    lines.extend(model_lines(model))
    return Report(
        since=since, at=now, lines=tuple(lines), capacity=plan, model=model, origin=origin
    )


async def read_report_from(url: str, *, since: timedelta) -> Report:
    """``read_report`` on Prometheus at ``url``, on a client of its own, closed afterwards."""
    async with httpx.AsyncClient() as client:
        source = PrometheusSource(url=url, client=client)
        origin = f"Prometheus at {source.url}"
        try:
            await source.instant("vector(1)", now=datetime.now(UTC))
        except QueryError as exc:  # better one clear error than a page of them
            raise ReportError(f"{origin} did not answer: {exc}") from None
        return await read_report(source, since=since, origin=origin)


async def read_report_of_engine(url: str, *, token: str | None, since: timedelta) -> Report:
    """``read_report`` on the in-process engine of the API at ``url`` (its own window:
    ``since`` beyond what it has sampled covers what it has)."""
    async with httpx.AsyncClient() as client:
        source = EngineSource(url=url, token=token, client=client)
        report = await read_report(source, since=since, origin=f"the engine of {source.url}")
    covered = timedelta(seconds=round(source.covered_seconds or 0.0))
    # Within a minute of the window (the engine keeps one snapshot a minute of older data)
    # the window is covered; short of that, the report says how much was.
    if covered + timedelta(minutes=1) < since:
        origin = f"{report.origin}, {format_duration(covered) if covered else 'nothing'} sampled"
        report = replace(report, origin=origin)
    return report


def _query(check: Check, since: timedelta) -> SignalQuery:
    params = {"params": check.params} if check.params else {}
    return SignalQuery(check.signal, SignalArgs(by=check.by, window=since, **params))


def _vector(answer: QueryResult) -> Vector:
    assert isinstance(answer, Vector)  # failures were raised above
    return answer


def _check_lines(check: Check, vector: Vector) -> list[Line]:
    if not check.by:
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


def _api(answer: QueryResult) -> Mapping[str, float]:
    """Per instance of the ``api`` scrape job: capacity counts only the API instances."""
    return {
        labels["instance"]: sample.value
        for sample in _vector(answer).samples
        if (labels := dict(sample.labels)).get("job") == API_JOB and "instance" in labels
    }


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
        f"Scaling health over the last {format_duration(report.since)}",
        f"({report.origin}, {when})",
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
        "",
        "CPU model (M/M/c, docs/capacity.md): cores busy per core usable; an instance saturates",
        "at cores / CPU per request, and its p95 reaches the 200 ms target a little before:",
        *(
            f"  {each.instance}: {each.cores:g} core(s), {each.cpu_per_request_seconds * 1000:.2f}"
            f" ms CPU per request: saturation {each.saturation_rate:.0f}/s, p95 200 ms at"
            f" ~{each.rate_at_target_p95:.0f}/s (now {each.requests_per_second:.2f}/s)"
            for each in report.model.instances
            if each.cpu_per_request_seconds is not None
            and each.cores is not None
            and each.saturation_rate is not None
            and each.rate_at_target_p95 is not None
        ),
        f"instances needed (CPU): busy cores over {report.model.target_utilisation:.0%} of"
        " each instance's cores, at least 1",
    ]
    return "\n".join(notes)


def _shown(each: Line) -> str:
    if each.check.startswith("instances needed") and each.value is not None:
        return f"{each.value:g}"
    return format_value(each.value, each.unit)
