"""Evaluation cycles against a real database: state survives restarts, notifications are
queued once, shared queries are asked once, failures are counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.evaluator import Evaluator
from alerts.query import QueryFailed, Sample, Vector
from alerts.rule import Group, Op, Rule, SignalQuery
from alerts.signals import SignalArgs
from alerts.sources.local import LocalSource
from alerts.state import AlertState
from alerts.store import Store, alert_outbox
from instrumentation.catalogue import Catalogue
from tests.alerts.conftest import ScriptedSource

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
P95 = SignalQuery("http_latency_p95_seconds", SignalArgs(by=("route",)))


def latency_rule(name: str, threshold: float, *, for_: int = 30) -> Rule:
    return Rule(
        name=name,
        group="g",
        query=P95,
        op=Op.GT,
        threshold=threshold,
        for_=timedelta(seconds=for_),
        annotations=(("summary", "{{ labels.route }} at {{ value }}"),),
    )


GROUP = Group(
    "g",
    interval=timedelta(seconds=15),
    rules=(latency_rule("Page", 0.5), latency_rule("Warn", 0.2, for_=0)),
)
SLOW = Vector((Sample((("route", "/p"),), 0.7),))


def evaluator(engine: AsyncEngine, source: ScriptedSource, metrics: Catalogue) -> Evaluator:
    self_source = LocalSource(collectors=[metrics.registry], retention=timedelta(minutes=10))
    built = Evaluator(
        source=source,
        self_source=self_source,
        store=Store(engine),
        receivers=["console", "webhook"],
        metrics=metrics,
    )
    built.prepare(GROUP.rules)
    return built


async def outbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(alert_outbox))).scalar_one()
        )


async def test_rules_sharing_a_query_ask_it_once(engine: AsyncEngine) -> None:
    source = ScriptedSource()
    source.answers[P95.promql] = SLOW
    cycle = await evaluator(engine, source, Catalogue(CollectorRegistry())).run(GROUP, now=T0)
    assert source.asked == [P95.promql]
    assert cycle.queries == 1
    assert [a.state for a in cycle.evaluations["Page"].alerts] == [AlertState.PENDING]
    assert [a.state for a in cycle.evaluations["Warn"].alerts] == [AlertState.FIRING]


async def test_a_restart_keeps_timers_and_does_not_notify_twice(engine: AsyncEngine) -> None:
    source = ScriptedSource()
    source.answers[P95.promql] = SLOW
    first = evaluator(engine, source, Catalogue(CollectorRegistry()))
    await first.run(GROUP, now=T0)
    assert await outbox_rows(engine) == 2  # Warn fired at once: console + webhook

    # A new process: fresh objects, same database.
    second = evaluator(engine, source, Catalogue(CollectorRegistry()))
    cycle = await second.run(GROUP, now=T0 + timedelta(seconds=15))
    (page,) = cycle.evaluations["Page"].alerts
    assert page.state is AlertState.PENDING and page.active_at == T0
    assert cycle.notifications == 0 and await outbox_rows(engine) == 2

    third = evaluator(engine, source, Catalogue(CollectorRegistry()))
    cycle = await third.run(GROUP, now=T0 + timedelta(seconds=30))
    (page,) = cycle.evaluations["Page"].alerts
    assert page.state is AlertState.FIRING and page.fired_at == T0 + timedelta(seconds=30)
    assert await outbox_rows(engine) == 4

    stored = {a.rule: a for a in await Store(engine).active()}
    assert stored["Page"].active_at == T0
    assert stored["Warn"].last_sent_at == T0


async def test_a_failed_query_keeps_state_and_is_counted(engine: AsyncEngine) -> None:
    metrics = Catalogue(CollectorRegistry())
    source = ScriptedSource()
    source.answers[P95.promql] = SLOW
    await evaluator(engine, source, metrics).run(GROUP, now=T0)
    source.answers[P95.promql] = QueryFailed("prometheus: timed out")
    cycle = await evaluator(engine, source, metrics).run(GROUP, now=T0 + timedelta(minutes=30))
    assert sorted(cycle.failed) == ["Page", "Warn"]
    active = await Store(engine).active()
    assert {(a.rule, a.state) for a in active} == {
        ("Page", AlertState.PENDING),
        ("Warn", AlertState.FIRING),
    }
    registry = metrics.registry
    assert (
        registry.get_sample_value("dynoscope_rule_evaluation_failures_total", {"rule": "Page"}) == 1
    )
    assert registry.get_sample_value("dynoscope_rule_evaluations_total", {"rule": "Page"}) == 2
    assert (
        registry.get_sample_value("dynoscope_alerts", {"alertname": "Warn", "state": "firing"}) == 1
    )


async def test_history_records_each_transition(engine: AsyncEngine) -> None:
    source = ScriptedSource()
    source.answers[P95.promql] = SLOW
    run = evaluator(engine, source, Catalogue(CollectorRegistry())).run
    await run(GROUP, now=T0)
    await run(GROUP, now=T0 + timedelta(seconds=30))
    source.answers[P95.promql] = Vector()
    await run(GROUP, now=T0 + timedelta(seconds=45))
    history = await Store(engine).history()
    assert [(h.rule, h.state.value) for h in reversed(history)] == [
        ("Page", "pending"),
        ("Warn", "firing"),
        ("Page", "firing"),
        ("Page", "resolved"),
        ("Warn", "resolved"),
    ]
    assert await Store(engine).active() == []
    assert history[0].annotations == {"summary": "/p at 0.7"}


async def test_monitor_evaluation_failing_fires_in_the_failing_cycle(engine: AsyncEngine) -> None:
    metrics = Catalogue(CollectorRegistry())
    monitor_rule = Rule(
        name="MonitorEvaluationFailing",
        group="g",
        query=SignalQuery("rule_evaluation_failures", SignalArgs(by=("rule",))),
        op=Op.GT,
        threshold=0,
    )
    group = Group(
        "g", interval=timedelta(seconds=15), rules=(latency_rule("Page", 0.5), monitor_rule)
    )
    source = ScriptedSource()
    source.answers[P95.promql] = QueryFailed("prometheus: unreachable")
    self_source = LocalSource(collectors=[metrics.registry], retention=timedelta(minutes=10))
    built = Evaluator(
        source=source, self_source=self_source, store=Store(engine), receivers=[], metrics=metrics
    )
    built.prepare(group.rules)  # every failure counter exists at zero ...
    self_source.sample(T0 - timedelta(seconds=1))  # ... in a snapshot taken at start-up
    cycle = await built.run(group, now=T0)
    (alert,) = cycle.evaluations["MonitorEvaluationFailing"].alerts
    assert alert.state is AlertState.FIRING and dict(alert.labels)["rule"] == "Page"
    assert cycle.failed == ["Page"]
