"""Context for on-call: a fired latency or slow-query alert carries example slow traces and the
slowest statement fingerprints, found at firing time; a source that cannot say costs nothing.

End to end on real components (a real Prometheus with exemplar storage scraping the served
API, and the embedded local source), then the failure paths on the evaluator with a scripted
rule source (an interface we own) and a real, unreachable Prometheus for the context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerts.delivery.links import Links
from alerts.delivery.notification import Delivery, alerts_of
from alerts.delivery.notifiers.alertmanager import postable_alerts
from alerts.delivery.outbox import Outbox
from alerts.engine.context import Context
from alerts.engine.evaluator import Evaluator
from alerts.engine.ledger import Ledger
from alerts.engine.monitor import Monitor, open_store
from alerts.engine.query import Exemplar, Sample, Vector
from alerts.engine.sources import LocalSource, PrometheusSource
from alerts.http.state import engine_state
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Group, Op, Rule, SignalQuery
from alerts.rules.signal import SignalArgs
from alerts.settings import AlertSettings
from api.settings import Settings
from exporters.tracefile import read_spans, trace_files
from instrumentation.catalogue import Catalogue
from instrumentation.settings import SettingsError
from tests.alerts.conftest import ScriptedSource
from tests.alerts.harness import (
    Receiver,
    eventually,
    in_background,
    rules_file,
    served_api,
    webhook_receiver,
)
from tests.support.locks import WRITE_ROUTE, table_held, writer
from tests.support.prometheus import running_prometheus
from tests.support.stack import free_port
from tests.support.users import register_and_login

FAULT_SECONDS = 1.1  # each hold of the listings table: longer than the 1 s slow-query threshold

TRACE_UI = "http://jaeger.example:16686/trace/{{ trace_id }}"
SHORT = {
    "DatabaseSlowQuery": {"window": "10s"},
    "ApiLatencyP95High": {"window": "10s", "for": "1s", "keep_firing_for": "0"},
}
# Every request sampled, so every slow request has a trace to point to.
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}


def firing_with_context(receiver: Receiver, name: str) -> dict[str, Any] | None:
    """The first firing webhook alert object of ``name`` that carries context (for the
    latency alert: the one of the writes that waited, not of the sign-up before them)."""
    for body in receiver.bodies:
        for alert in body["alerts"]:
            named = alert["labels"].get("alertname") == name
            route = alert["labels"].get("route", WRITE_ROUTE)
            if (
                named
                and route == WRITE_ROUTE
                and alert["status"] == "firing"
                and alert.get("context")
            ):
                return dict(alert)
    return None


def has_context(receiver: Receiver, name: str) -> bool:
    return firing_with_context(receiver, name) is not None


def recorded_traces(traces_file: str) -> dict[str, set[str]]:
    """Trace id → the routes of its server spans, from the API's own trace files."""
    traces: dict[str, set[str]] = {}
    for path in trace_files(traces_file):
        for span in read_spans(path):
            route = span.attributes.get("http.route")
            traces.setdefault(span.trace_id, set()).update([str(route)] if route else [])
    return traces


async def fires_with_context(
    receiver: Receiver, client: httpx.AsyncClient, *, traces_file: str, database_url: str
) -> None:
    owner = await register_and_login(client)
    async with (
        table_held(database_url, hold=lambda _: FAULT_SECONDS),
        in_background(*(writer(client, owner["headers"]) for _ in range(3))),
    ):
        for name in SHORT:
            await eventually(
                partial(has_context, receiver, name),
                seconds=45,
                what=f"{name} firing with context",
            )
    latency = firing_with_context(receiver, "ApiLatencyP95High")
    slow = firing_with_context(receiver, "DatabaseSlowQuery")
    assert latency is not None and slow is not None
    # v4 fields are all still there, beside the new ones.
    assert latency["startsAt"] and latency["fingerprint"] and latency["endsAt"]
    assert latency["op"] == ">" and latency["threshold"] == 0.5 and latency["value"] > 0.5
    ids = latency["context"]["trace_ids"]
    assert 1 <= len(ids) <= 5
    # A request's server span is written when it ends, after its statements' spans.
    await eventually(
        lambda: all(WRITE_ROUTE in recorded_traces(traces_file).get(i, set()) for i in ids),
        seconds=15,
        what=f"the example traces, requests to {WRITE_ROUTE}, in the API's trace file",
    )
    recorded = recorded_traces(traces_file)
    assert latency["links"]["traces"] == {
        trace_id: f"http://jaeger.example:16686/trace/{trace_id}" for trace_id in ids
    }
    assert (
        latency["links"]["runbook"] == "https://runbooks.example/docs/runbook.md#apilatencyp95high"
    )
    # The latency alert names statements of requests the API traced: those of its example
    # traces first (a write's authentication reads beside its INSERT), whichever of them
    # Prometheus held an exemplar for when the alert fired.
    queries = latency["context"]["queries"]
    assert queries and all(q["trace_id"] in recorded for q in queries), queries
    # The slow-query alert fires on a statement over the 1 s threshold, and names it: one
    # that waited on the held listings table (the INSERT; on PostgreSQL also the SELECTs the
    # lock blocks).
    slowest = max(slow["context"]["queries"], key=lambda q: q["seconds"])
    assert slowest["table"] == "properties" and slowest["seconds"] >= 1.0, slowest
    assert slowest["trace_id"] in recorded
    assert set(slow["context"]["trace_ids"]) <= set(recorded)


def engine_environ(receiver: Receiver, rules: Path) -> dict[str, str]:
    return {
        "ALERT_WEBHOOK_URL": receiver.url,
        "ALERT_RULES_PATH": str(rules),
        "ALERT_TRACE_URL_TEMPLATE": TRACE_UI,
        "ALERT_RUNBOOK_BASE_URL": "https://runbooks.example/",
    }


@pytest.mark.prometheus
@pytest.mark.postgres
@pytest.mark.redis
async def test_prometheus_exemplars_give_a_latency_alert_its_traces_and_slowest_query(
    shared_environ: dict[str, str], tmp_path: Path
) -> None:
    rules = rules_file(tmp_path, SHORT)
    api_environ = {**shared_environ, **SAMPLED, "PROMETHEUS_URL": "http://127.0.0.1:9"}
    async with webhook_receiver() as receiver, served_api(api_environ) as api:
        with running_prometheus({"api": [api.target]}, features=["exemplar-storage"]) as prom:
            environ = {**shared_environ, **engine_environ(receiver, rules)}
            settings = Settings.from_env({**environ, "PROMETHEUS_URL": prom.url})
            store = open_store(settings.alerts)
            monitor = Monitor.build(
                settings.alerts, store=store, metrics=Catalogue(CollectorRegistry()), job="alerts"
            )
            await monitor.start(immediately=True)
            try:
                await fires_with_context(
                    receiver,
                    api.client,
                    traces_file=shared_environ["DYNOSCOPE_TRACES_FILE"],
                    database_url=shared_environ["DATABASE_URL"],
                )
            finally:
                await monitor.stop()
                await store.dispose()


async def test_the_local_source_gives_a_latency_alert_its_traces_and_slowest_query(
    sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    async with webhook_receiver() as receiver:
        rules = rules_file(tmp_path, SHORT)
        environ = {**sqlite_environ, **SAMPLED, **engine_environ(receiver, rules)}
        async with served_api(environ) as api:
            monitor = engine_state(api.app).monitor
            assert isinstance(monitor, Monitor) and monitor.source.name == "local"
            await fires_with_context(
                receiver,
                api.client,
                traces_file=sqlite_environ["DYNOSCOPE_TRACES_FILE"],
                database_url=sqlite_environ["DATABASE_URL"],
            )


# The failure paths: a rule source scripted to fire, the context source down or hanging.

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
P95 = SignalQuery("http_latency_p95_seconds", SignalArgs(by=("route",)))
LATENCY = Rule(
    name="Slow", group="g", query=P95, op=Op.GT, threshold=0.5, labels=(("severity", "page"),)
)
GROUP = Group("g", interval=timedelta(seconds=15), rules=(LATENCY,))


class Keeper:
    """A notifier (our interface) keeping every delivery it is given."""

    groups = True
    resend_every = None

    name = "keeper"

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    async def send(self, delivery: Delivery) -> None:
        self.deliveries.extend(alerts_of(delivery))  # a group's message: each of its alerts


class Hanging:
    """An exemplar source (our interface) that never answers."""

    name = "hanging"

    async def exemplars(
        self,
        metric: str,
        *,
        matchers: Mapping[str, str],
        start: datetime,
        end: datetime,
        seconds: float,
    ) -> list[Exemplar]:
        await asyncio.sleep(3600)
        return []


def evaluator_with(
    context: Context, keeper: Keeper, metrics: EngineMetrics
) -> tuple[Evaluator, Outbox]:
    source = ScriptedSource()
    source.answers[P95.promql] = Vector((Sample((("route", "/p"),), 0.9),))
    ledger = Ledger()
    outbox = Outbox(
        notifiers={"keeper": keeper}, ledger=ledger, metrics=metrics, links=Links(trace=TRACE_UI)
    )
    self_source = LocalSource(collectors=[metrics.registry], retention=timedelta(minutes=5))
    evaluator = Evaluator(
        source=source,
        self_source=self_source,
        ledger=ledger,
        outbox=outbox,
        metrics=metrics,
        context=context,
    )
    return evaluator, outbox


async def test_prometheus_unreachable_for_context_the_notification_still_goes_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    keeper = Keeper()
    async with httpx.AsyncClient() as client:
        down = PrometheusSource(url=f"http://127.0.0.1:{free_port()}", client=client)
        context = Context(source=down, timeout=1.0, metrics=metrics)
        evaluator, outbox = evaluator_with(context, keeper, metrics)
        with caplog.at_level(logging.WARNING, logger="dynoscope.alerts"):
            await evaluator.run(GROUP, now=T0)
            await outbox.deliver(now=T0)
            # Repeats of a firing alert ask again; the outage is logged once, counted each time.
            later = T0 + timedelta(hours=5)
            await evaluator.run(GROUP, now=later)
            await outbox.deliver(now=later)
    (delivery, repeat) = keeper.deliveries
    assert delivery.status == "firing" and delivery.payload["threshold"] == 0.5
    assert "context" not in delivery.payload and "links" not in delivery.payload
    assert caplog.text.count("alert context from prometheus unavailable") == 1
    errors = metrics.registry.get_sample_value(
        "dynoscope_dependency_errors_total", {"dependency": "alert_context"}
    )
    assert errors == 2
    assert repeat.status == "firing"


async def test_a_hanging_context_source_delays_a_notification_by_its_timeout_only() -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    keeper = Keeper()
    evaluator, outbox = evaluator_with(
        Context(source=Hanging(), timeout=0.3, metrics=metrics), keeper, metrics
    )
    started = time.monotonic()
    await evaluator.run(GROUP, now=T0)
    assert time.monotonic() - started < 2.0
    await outbox.deliver(now=T0)
    (delivery,) = keeper.deliveries
    assert delivery.status == "firing" and "context" not in delivery.payload


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://jaeger/trace/{{ trace_id", "ALERT_TRACE_URL_TEMPLATE"),
        ("http://jaeger/search?service=api", "must use {{ trace_id }}"),
    ],
)
def test_a_bad_trace_url_template_is_refused_at_start(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        AlertSettings.from_env({"ALERT_TRACE_URL_TEMPLATE": value})
    assert message in str(raised.value)


def test_trace_links_render_per_example_and_a_relative_runbook_joins_its_base() -> None:
    settings = AlertSettings.from_env(
        {
            "ALERT_TRACE_URL_TEMPLATE": TRACE_UI,
            "ALERT_RUNBOOK_BASE_URL": "https://git.example/dynoscope/blob/main",
        }
    )
    links = Links(trace=settings.trace_url_template, runbook_base=settings.runbook_base_url)
    payload = {
        "labels": {"route": "/p"},
        "annotations": {"runbook_url": "docs/runbook.md#instancedown"},
        "value": 1.0,
        "context": {"trace_ids": ["a1", "b2"]},
    }
    assert links.render(payload) == {
        "runbook": "https://git.example/dynoscope/blob/main/docs/runbook.md#instancedown",
        "traces": {
            "a1": "http://jaeger.example:16686/trace/a1",
            "b2": "http://jaeger.example:16686/trace/b2",
        },
    }


def test_alertmanager_gets_the_absolute_runbook_url() -> None:
    payload = {
        "labels": {"alertname": "InstanceDown"},
        "annotations": {"runbook_url": "docs/runbook.md#instancedown"},
        "startsAt": "2026-11-29T03:00:00Z",
        "endsAt": None,
        "value": 0.0,
    }
    payload["links"] = Links(runbook_base="https://git.example/d/").render(payload)
    delivery = Delivery(
        id="1", receiver="am", dedup_key="f", status="firing", payload=payload, created_at=T0
    )
    (posted,) = postable_alerts(delivery, now=T0, ends_after=timedelta(minutes=4))
    assert (
        posted["annotations"]["runbook_url"] == "https://git.example/d/docs/runbook.md#instancedown"
    )
