"""Evaluation cycles: in memory, written behind to a real store; state survives restarts,
notifications are queued once, shared queries are asked once, failures are counted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.engine.monitor import open_store
from alerts.engine.query import QueryFailed, Sample, Vector
from alerts.engine.state import AlertState
from alerts.metrics import EngineMetrics
from alerts.rules.rule import Group, Op, Rule, SignalQuery
from alerts.rules.signal import SignalArgs
from alerts.settings import AlertSettings
from alerts.store.migrate import upgrade
from alerts.store.store import Store
from instrumentation.catalogue import Catalogue
from tests.alerts.conftest import Recorder, ScriptedSource, engine_parts
from tests.support.stack import free_port

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
RECEIVERS = {"console": Recorder("console"), "webhook": Recorder("webhook")}


def slow_source() -> ScriptedSource:
    source = ScriptedSource()
    source.answers[P95.promql] = SLOW
    return source


async def test_rules_sharing_a_query_ask_it_once(sqlite_store: AsyncEngine) -> None:
    source = slow_source()
    parts = engine_parts(sqlite_store, source, rules=GROUP.rules)
    cycle = await parts.evaluator.run(GROUP, now=T0)
    assert source.asked == [P95.promql]
    assert cycle.queries == 1
    assert [a.state for a in cycle.evaluations["Page"].alerts] == [AlertState.PENDING]
    assert [a.state for a in cycle.evaluations["Warn"].alerts] == [AlertState.FIRING]


async def test_a_restart_keeps_timers_and_does_not_notify_twice(store_engine: AsyncEngine) -> None:
    source = slow_source()
    first = engine_parts(store_engine, source, rules=GROUP.rules, notifiers=RECEIVERS)
    assert await first.writer.connect(now=T0)
    await first.evaluator.run(GROUP, now=T0)
    assert first.outbox.pending() == 2  # Warn fired at once: console + webhook
    assert await first.writer.flush(now=T0)

    # A new process: fresh objects, same store.
    second = engine_parts(store_engine, source, rules=GROUP.rules, notifiers=RECEIVERS)
    assert await second.writer.connect(now=T0 + timedelta(seconds=15))
    assert second.outbox.pending() == 2  # the undelivered notifications came back, once
    cycle = await second.evaluator.run(GROUP, now=T0 + timedelta(seconds=15))
    (page,) = cycle.evaluations["Page"].alerts
    assert page.state is AlertState.PENDING and page.active_at == T0
    assert cycle.notifications == 0
    await second.writer.flush(now=T0 + timedelta(seconds=15))

    third = engine_parts(store_engine, source, rules=GROUP.rules, notifiers=RECEIVERS)
    await third.writer.connect(now=T0 + timedelta(seconds=30))
    cycle = await third.evaluator.run(GROUP, now=T0 + timedelta(seconds=30))
    (page,) = cycle.evaluations["Page"].alerts
    assert page.state is AlertState.FIRING and page.fired_at == T0 + timedelta(seconds=30)
    assert third.outbox.pending() == 4
    await third.writer.flush(now=T0 + timedelta(seconds=30))

    stored = {a.rule: a for a in await Store(store_engine).active()}
    assert stored["Page"].active_at == T0
    assert stored["Warn"].last_sent_at == T0


async def test_alerts_of_a_removed_rule_resolve_instead_of_firing_for_ever(
    store_engine: AsyncEngine,
) -> None:
    source = slow_source()
    before = engine_parts(store_engine, source, rules=GROUP.rules)
    await before.writer.connect(now=T0)
    await before.evaluator.run(GROUP, now=T0)
    await before.writer.flush(now=T0)

    # Restarted with "Warn" deleted from the rule files.
    kept = Group("g", interval=GROUP.interval, rules=(GROUP.rules[0],))
    recorder = Recorder("console")
    after = engine_parts(store_engine, source, rules=kept.rules, notifiers={"console": recorder})
    later = T0 + timedelta(minutes=1)
    await after.writer.connect(now=later)
    await after.outbox.deliver(now=later)
    await after.outbox.deliver(now=later)  # one attempt per alert and round: in order
    assert recorder.accepted == ["firing", "resolved"]  # the old firing, then its end
    await after.evaluator.run(kept, now=later)
    await after.writer.flush(now=later)
    active = await Store(store_engine).active()
    assert {a.rule for a in active} == {"Page"}
    history = await Store(store_engine).history()
    assert [(h.rule, h.state.value) for h in reversed(history)] == [
        ("Page", "pending"),
        ("Warn", "firing"),
        ("Warn", "resolved"),
        ("Page", "firing"),
    ]


async def test_a_failed_query_keeps_state_and_is_counted_once_while_the_store_is_down(
    tmp_path: object,
) -> None:
    # A store that refuses connections: nobody listens on the port.
    down = AlertSettings.from_env(
        {"ALERT_STORE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    )
    store = open_store(down)
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
    source = slow_source()
    parts = engine_parts(store, source, rules=GROUP.rules, metrics=metrics, timeout=0.5)
    try:
        assert not await parts.writer.connect(now=T0)
        await parts.evaluator.run(GROUP, now=T0)
        source.answers[P95.promql] = QueryFailed("prometheus: timed out")
        cycle = await parts.evaluator.run(GROUP, now=T0 + timedelta(minutes=30))
        assert not await parts.writer.flush(now=T0 + timedelta(minutes=30))
    finally:
        await store.dispose()
    assert sorted(cycle.failed) == ["Page", "Warn"]
    assert {(a.rule, a.state) for a in parts.ledger.active()} == {
        ("Page", AlertState.PENDING),
        ("Warn", AlertState.FIRING),
    }
    registry = metrics.registry
    failures = registry.get_sample_value
    assert failures("dynoscope_rule_evaluation_failures_total", {"rule": "Page"}) == 1
    assert failures("dynoscope_rule_evaluations_total", {"rule": "Page"}) == 2
    assert failures("dynoscope_alerts", {"alertname": "Warn", "state": "firing"}) == 1
    assert failures("dynoscope_alert_store_up") == 0
    assert (failures("dynoscope_alert_store_failures_total", {"operation": "load"}) or 0) >= 2


async def test_history_records_each_transition(store_engine: AsyncEngine) -> None:
    source = slow_source()
    parts = engine_parts(store_engine, source, rules=GROUP.rules)
    await parts.writer.connect(now=T0)
    run = parts.evaluator.run
    await run(GROUP, now=T0)
    await run(GROUP, now=T0 + timedelta(seconds=30))
    source.answers[P95.promql] = Vector()
    await run(GROUP, now=T0 + timedelta(seconds=45))
    assert await parts.writer.flush(now=T0 + timedelta(seconds=45))
    history = await Store(store_engine).history()
    assert [(h.rule, h.state.value) for h in reversed(history)] == [
        ("Page", "pending"),
        ("Warn", "firing"),
        ("Page", "firing"),
        ("Page", "resolved"),
        ("Warn", "resolved"),
    ]
    assert [h.id for h in reversed(parts.ledger.recent)] == [h.id for h in history]
    assert await Store(store_engine).active() == []
    assert history[0].annotations == {"summary": "/p at 0.7"}


async def test_monitor_evaluation_failing_fires_in_the_failing_cycle(
    sqlite_store: AsyncEngine,
) -> None:
    metrics = EngineMetrics(Catalogue(CollectorRegistry()))
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
    parts = engine_parts(sqlite_store, source, rules=group.rules, metrics=metrics)
    parts.self_source.sample(T0 - timedelta(seconds=1))  # a snapshot taken at start-up
    cycle = await parts.evaluator.run(group, now=T0)
    (alert,) = cycle.evaluations["MonitorEvaluationFailing"].alerts
    assert alert.state is AlertState.FIRING and dict(alert.labels)["rule"] == "Page"
    assert cycle.failed == ["Page"]


async def test_a_store_migrated_twice_is_unchanged(sqlite_store: AsyncEngine) -> None:
    await upgrade(sqlite_store)
    assert (await Store(sqlite_store).load()).alerts == {}
