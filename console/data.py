"""What the console's pages show, read from the app's alert engine, its store, Prometheus and
the trace files; plain values the templates render.

The engine's own window (the embedded default) or Prometheus answer the overview's scorecard
(``ops.report``, the same as ``dynoscope report``) and its charts: a signal evaluated once a
minute over the last hour, from the snapshots the engine already took, or by one Prometheus
range query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import ValidationError
from starlette.datastructures import FormData

from alerts.cli.receivers import send_sample
from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery
from alerts.delivery.routing import CONSOLE
from alerts.engine.monitor import Monitor
from alerts.engine.query import Examples
from alerts.engine.sources import LocalSource, PrometheusSource, Source
from alerts.engine.state import Alert, AlertState, Notification
from alerts.errors import AlertsError, NotificationError
from alerts.http.app import app_store
from alerts.http.state import engine_state
from alerts.rules.rule import SignalQuery
from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named
from alerts.settings import AlertSettings
from alerts.silences.matchers import Matcher, parse_matcher
from alerts.store.store import HistoryEntry, Store
from exporters.tracefile import SpanRecord, read_spans
from instrumentation.traceview import TraceSummary, find_trace, slowest
from ops.report import Report, read_report
from ops.scorecard import format_value

HOUR = timedelta(hours=1)
STEP = timedelta(minutes=1)


# --- overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    query: SignalQuery
    unit: str
    series_label: str | None = None


def _query(signal: str, window: timedelta, *by: str) -> SignalQuery:
    """The signal with its parameters' defaults (no traffic guard: a chart shows it all)."""
    params = signal_named(signal).params()
    return SignalQuery(signal, SignalArgs(by=by, window=window, params=params))


CHARTS = (
    Chart("latency", "Latency p95 by route", _query("http_latency_p95_seconds", 5 * STEP, "route"),
          "s", "route"),
    Chart("errors", "Error ratio (5xx)", _query("http_error_ratio", 5 * STEP), "ratio"),
    Chart("cache", "Cache hit ratio", _query("cache_hit_ratio", 5 * STEP, "cache"), "ratio",
          "cache"),
    Chart("requests", "Requests per second", _query("http_requests_per_second", 5 * STEP), "/s"),
    Chart("concurrency", "Concurrency per instance (Little's law)",
          _query("http_busy_seconds_per_second", 5 * STEP, "instance"), "", "instance"),
    Chart("memory", "Resident memory per instance",
          _query("memory_resident_bytes", STEP, "instance"), "B", "instance"),
)  # fmt: skip


def _source(app: FastAPI, alerts: AlertSettings, client: httpx.AsyncClient) -> Source | None:
    monitor = engine_state(app).monitor
    if monitor is not None and isinstance(monitor.source, LocalSource):
        return monitor.source
    if alerts.prometheus_url:
        return PrometheusSource(url=alerts.prometheus_url, client=client)
    return None


@dataclass(frozen=True)
class Scorecard:
    report: Report | None
    problem: str | None = None

    def shown(self, value: float | None, unit: str) -> str:
        return format_value(value, unit)


async def scorecard(app: FastAPI, alerts: AlertSettings) -> Scorecard:
    """The report's lines over the last hour; a problem instead when no source answers."""
    async with httpx.AsyncClient() as client:
        source = _source(app, alerts, client)
        if source is None:
            return Scorecard(None, "no alert engine runs here and PROMETHEUS_URL is not set")
        origin = "this engine's window" if isinstance(source, LocalSource) else "Prometheus"
        try:
            return Scorecard(await read_report(source, since=HOUR, origin=origin))
        except AlertsError as exc:
            return Scorecard(None, str(exc))


async def chart_series(
    app: FastAPI, alerts: AlertSettings, chart: Chart, *, now: datetime
) -> dict[str, Any]:
    """``{"title", "unit", "times": [...], "series": [{"name", "values": [...]}]}`` for the
    last hour, one point a minute (``None`` where there was nothing to compute). Every
    chart's window is at least five minutes: the engine keeps one snapshot a minute of what
    is older than a quarter of an hour, and a rate needs two."""
    now = now.replace(microsecond=0)  # Prometheus answers range points to the millisecond
    times = [now - HOUR + STEP * (i + 1) for i in range(int(HOUR / STEP))]
    found: dict[str, dict[float, float]] = {}
    async with httpx.AsyncClient() as client:
        source = _source(app, alerts, client)
        if isinstance(source, LocalSource):
            for at in times:
                try:
                    computed = source.at(chart.query, at)
                except (ArithmeticError, ValueError):
                    continue  # a point it cannot compute is a gap, as on Prometheus
                for sample in computed.samples:
                    name = _series_name(dict(sample.labels), chart.series_label)
                    found.setdefault(name, {})[round(at.timestamp(), 3)] = sample.value
        elif isinstance(source, PrometheusSource):
            try:
                ranges = await source.range(
                    chart.query.promql, start=times[0], end=times[-1], step=STEP
                )
            except AlertsError:
                ranges = {}
            for labels, points in ranges.items():
                name = _series_name(dict(labels), chart.series_label)
                found[name] = {round(t, 3): v for t, v in points}
    stamps = [round(at.timestamp(), 3) for at in times]
    return {
        "title": chart.title,
        "unit": chart.unit,
        "times": stamps,
        "series": [
            {"name": name, "values": [_finite(points.get(t)) for t in stamps]}
            for name, points in sorted(found.items())
        ],
    }


def _series_name(labels: Mapping[str, str], label: str | None) -> str:
    return labels.get(label, "?") if label else "all"


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


# --- alerts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    links: dict[str, Any]
    context: Examples | None = None

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.alert.labels)

    @property
    def summary(self) -> str:
        annotations = dict(self.alert.annotations)
        return annotations.get("summary") or annotations.get("description") or ""

    @property
    def condition(self) -> str:
        value = "no value" if math.isnan(self.alert.value) else f"{self.alert.value:.4g}"
        if self.alert.op is None or self.alert.threshold is None:
            return value
        return f"{value} {self.alert.op} {self.alert.threshold:g}"

    @property
    def silence_matchers(self) -> list[str]:
        return [str(Matcher(name, value)) for name, value in sorted(self.alert.labels)]


async def active_alerts(
    app: FastAPI, alerts: AlertSettings, *, with_context: str | None = None
) -> list[AlertView]:
    """Firing first, then pending; the context (example traces, slowest statements) looked up
    for the alert ``with_context`` when the engine runs here."""
    monitor = engine_state(app).monitor
    found = await monitor.current() if monitor is not None else await app_store(app).active()
    links = Links(
        grafana=alerts.grafana_url_template,
        trace=alerts.trace_url_template,
        runbook_base=alerts.runbook_base_url,
    )
    views = []
    for alert in sorted(found, key=lambda a: (a.state is not AlertState.FIRING, a.rule)):
        context = None
        if with_context == alert.fingerprint and monitor is not None:
            context = await _context(monitor, alert)
        payload = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "value": alert.value,
            "context": {"trace_ids": list(context.trace_ids)} if context else {},
        }
        views.append(AlertView(alert, links.render(payload), context))
    return views


async def _context(monitor: Monitor, alert: Alert) -> Examples | None:
    rule = next((r for r in monitor.rules.rules if r.name == alert.rule), None)
    looker = monitor.evaluator.context
    if rule is None or looker is None:
        return None
    try:
        return await looker.examples(rule, Notification(alert, at=alert.active_at), now=_now())
    except Exception:  # context is a help, never a reason for the page to fail
        return None


def _now() -> datetime:
    return datetime.now(UTC)


def messages(exc: Exception) -> list[str]:
    """What was wrong, as the API says it: ``field: message`` per validation error."""
    if isinstance(exc, ValidationError):
        found = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            found.append(f"{where}: {message}" if where else message)
        return found
    if isinstance(exc, HTTPException):
        return [str(exc.detail)]
    return [str(exc)]


# --- silences ------------------------------------------------------------------------------


@dataclass
class SilenceForm:
    """What the silence form holds: kept as typed when it is refused."""

    matchers: str = ""
    duration: str = "2h"
    author: str = ""
    comment: str = ""


def silence_form(matchers: Sequence[str]) -> SilenceForm:
    return SilenceForm(matchers="\n".join(matchers))


def silence_form_from(form: FormData) -> SilenceForm:
    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    return SilenceForm(text("matchers"), text("duration") or "2h", text("author"), text("comment"))


def silence_in(form: SilenceForm, *, now: datetime) -> Any:
    """The API's model of the silence the form describes; ``ValidationError`` or
    ``ValueError`` saying what is wrong, in the API's words."""
    from alerts.http.silences import SilenceIn
    from alerts.rules.duration import parse_duration

    try:
        length = parse_duration(form.duration)
    except ValueError as exc:
        raise ValueError(f"duration: {exc}") from None
    if length <= timedelta(0):
        raise ValueError("duration: must be longer than 0")
    return SilenceIn(
        matchers=[line.strip() for line in form.matchers.splitlines() if line.strip()],
        ends_at=now + length,
        author=form.author,
        comment=form.comment,
    )


def matcher_errors(text: str) -> list[str]:
    """Each matcher line's problem, as the API would name it (empty: all good)."""
    errors = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ['matchers: give at least one, e.g. alertname="ApiLatencyP95High"']
    for number, line in enumerate(lines):
        try:
            parse_matcher(line)
        except ValueError as exc:
            errors.append(f"matchers.{number}: {exc}")
    return errors


# --- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryFilter:
    alert: str = ""
    label: str = ""
    since: str = "24h"
    problems: list[str] = field(default_factory=list)
    span: timedelta | None = None
    """``since`` read, or None when it could not be (then no time limit, and a problem)."""

    @classmethod
    def of(cls, params: Mapping[str, str]) -> HistoryFilter:
        alert = params.get("alert", "").strip()
        label = params.get("label", "").strip()
        since = params.get("since", "").strip() or "24h"
        problems = []
        if label and "=" not in label:
            problems.append('label: write it as name=value, e.g. route="/properties"')
        span = None
        try:
            span = _since(since)
        except ValueError as exc:
            problems.append(f"since: {exc}")
        return cls(alert, label, since, problems, span)

    def keeps(self, rule: str, labels: Mapping[str, str], at: datetime, now: datetime) -> bool:
        if self.alert and self.alert != rule:
            return False
        if self.label and "=" in self.label:
            name, _, value = self.label.partition("=")
            if labels.get(name.strip()) != value.strip().strip('"'):
                return False
        return self.span is None or at >= now - self.span


def _since(text: str) -> timedelta:
    from alerts.rules.duration import parse_duration

    return parse_duration(text)


async def history(
    app: FastAPI, filters: HistoryFilter
) -> tuple[list[HistoryEntry], list[Delivery]]:
    """Transitions (newest first) and deliveries per receiver that the filters keep."""
    monitor = engine_state(app).monitor
    store: Store = monitor.store if monitor is not None else app_store(app)
    if monitor is not None:
        entries = await monitor.history(limit=1000)
    else:
        entries = await store.history(limit=1000)
    now = _now()
    kept = [e for e in entries if filters.keeps(e.rule, e.labels, e.at, now)]
    try:
        deliveries = await store.deliveries()
    except Exception:  # the store is down: the transitions from memory are still worth showing
        deliveries = []
    shown = [
        d
        for d in reversed(deliveries)
        if filters.keeps(
            str(d.payload.get("labels", {}).get("alertname", "")),
            d.payload.get("labels", {}),
            d.created_at,
            now,
        )
    ]
    return kept, shown[:500]


# --- traces --------------------------------------------------------------------------------


def slowest_traces(path: str) -> list[TraceSummary]:
    return slowest(read_spans(path), limit=50, since_ns=0)


@dataclass(frozen=True)
class Bar:
    """One span as a waterfall row: where it starts and how wide it is, in percent."""

    span: SpanRecord
    depth: int
    offset: float
    width: float
    statement: str | None


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    duration_seconds: float
    bars: list[Bar]


def waterfall(path: str, trace_id: str) -> Waterfall | None:
    members = find_trace(read_spans(path), trace_id)
    if not members:
        return None
    start = min(s.start_ns for s in members)
    end = max(s.end_ns for s in members)
    total = max(end - start, 1)
    ids = {s.span_id for s in members}
    children: dict[str, list[SpanRecord]] = {}
    roots = []
    for span in sorted(members, key=lambda s: s.start_ns):
        if span.parent_id in ids:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    bars: list[Bar] = []

    def walk(span: SpanRecord, depth: int) -> None:
        statement = span.attributes.get("db.query.text") or span.attributes.get("db.statement")
        bars.append(
            Bar(
                span=span,
                depth=depth,
                offset=round(100 * (span.start_ns - start) / total, 2),
                width=max(round(100 * (span.end_ns - span.start_ns) / total, 2), 0.3),
                statement=str(statement) if statement else None,
            )
        )
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return Waterfall(members[0].trace_id, total / 1e9, bars)


# --- receivers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiverRow:
    name: str
    kind: str


def receivers(alerts: AlertSettings) -> list[ReceiverRow] | str:
    """Every receiver with its type, or why the receivers file could not be read."""
    try:
        configured = alerts.receivers()
    except AlertsError as exc:
        return str(exc)
    rows = [ReceiverRow(CONSOLE, "console: the engine's log, always")]
    rows += [ReceiverRow(n, str(getattr(c, "type", "?"))) for n, c in configured.configs.items()]
    return rows


@dataclass(frozen=True)
class Outcome:
    receiver: str
    ok: bool
    text: str


async def send_test(alerts: AlertSettings, name: str) -> Outcome:
    """The sample alert through receiver ``name``'s real notifier, and what it answered."""
    try:
        configured = alerts.receivers()
    except AlertsError as exc:
        return Outcome(name, False, str(exc))
    if name != CONSOLE and name not in configured.configs:
        return Outcome(name, False, f"no receiver {name!r}")
    try:
        return Outcome(name, True, await send_sample(configured, name))
    except NotificationError as exc:
        again = "worth retrying" if exc.retryable else "will not get better by retrying"
        return Outcome(name, False, f"{exc} ({again})")
