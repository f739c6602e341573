"""The state machine on a fixed clock: tables of steps, then properties."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine.query import QueryFailed, QueryResult, Sample, Vector
from alerts.engine.state import Alert, AlertState, Evaluation, evaluate
from alerts.rules.rule import NoData, Op, Rule, SignalQuery
from alerts.rules.signal import SignalArgs

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROUTE = (("route", "/properties"),)


def rule(**overrides: object) -> Rule:
    base: dict[str, object] = {
        "name": "ApiLatencyP95High",
        "group": "g",
        "query": SignalQuery("http_latency_p95_seconds", SignalArgs(by=("route",))),
        "op": Op.GT,
        "threshold": 0.5,
        "for_": timedelta(seconds=30),
        "labels": (("severity", "page"),),
        "annotations": (("summary", "p95 {{ value }} on {{ labels.route }}"),),
    }
    base.update(overrides)
    return Rule(**base)  # type: ignore[arg-type]


def value(v: float) -> Vector:
    return Vector((Sample(ROUTE, v),))


NO_DATA = Vector()
FAILED = QueryFailed("connection refused")


@dataclass(frozen=True)
class Step:
    at: int  # seconds after T0
    result: QueryResult
    state: AlertState | None  # of the one alert after the step; None: no active alert
    sent: tuple[str, ...] = ()


def run(r: Rule, steps: list[Step]) -> list[Alert]:
    alerts: tuple[Alert, ...] = ()
    for step in steps:
        now = T0 + timedelta(seconds=step.at)
        outcome = evaluate(r, alerts, result=step.result, now=now)
        alerts = outcome.alerts
        states = [a.state for a in alerts]
        assert states == ([step.state] if step.state else []), f"at +{step.at}s"
        sent = tuple(n.status for n in outcome.notifications)
        assert sent == step.sent, f"at +{step.at}s"
    return list(alerts)


TABLES = {
    "pending then firing after for": (
        rule(),
        [
            Step(0, value(0.7), AlertState.PENDING),
            Step(15, value(0.7), AlertState.PENDING),
            Step(30, value(0.7), AlertState.FIRING, ("firing",)),
            Step(45, value(0.8), AlertState.FIRING),
            Step(60, value(0.1), None, ("resolved",)),
        ],
    ),
    "pending that clears never fires": (
        rule(),
        [
            Step(0, value(0.7), AlertState.PENDING),
            Step(15, value(0.2), None),
            Step(30, value(0.7), AlertState.PENDING),
        ],
    ),
    "for 0 fires at once": (
        rule(for_=timedelta(0)),
        [
            Step(0, value(0.7), AlertState.FIRING, ("firing",)),
            Step(15, NO_DATA, None, ("resolved",)),
        ],
    ),
    "keep_firing_for holds a flapping alert": (
        rule(for_=timedelta(0), keep_firing_for=timedelta(seconds=30)),
        [
            Step(0, value(0.7), AlertState.FIRING, ("firing",)),
            Step(15, value(0.1), AlertState.FIRING),
            Step(30, value(0.9), AlertState.FIRING),
            Step(45, value(0.1), AlertState.FIRING),
            Step(60, value(0.1), AlertState.FIRING),
            Step(75, value(0.1), None, ("resolved",)),
        ],
    ),
    "failed query keeps firing and pending timers": (
        rule(),
        [
            Step(0, value(0.7), AlertState.PENDING),
            Step(15, FAILED, AlertState.PENDING),
            Step(30, value(0.7), AlertState.FIRING, ("firing",)),
            Step(45, FAILED, AlertState.FIRING),
            Step(9999, FAILED, AlertState.FIRING),
        ],
    ),
    "no data ok resolves": (
        rule(for_=timedelta(0)),
        [
            Step(0, value(0.7), AlertState.FIRING, ("firing",)),
            Step(15, NO_DATA, None, ("resolved",)),
        ],
    ),
    "no data keep changes nothing": (
        rule(for_=timedelta(0), no_data=NoData.KEEP),
        [Step(0, value(0.7), AlertState.FIRING, ("firing",)), Step(15, NO_DATA, AlertState.FIRING)],
    ),
    "no data alerting fires after for": (
        rule(no_data=NoData.ALERTING),
        [
            Step(0, NO_DATA, AlertState.PENDING),
            Step(30, NO_DATA, AlertState.FIRING, ("firing",)),
            Step(45, value(0.1), None, ("resolved",)),
        ],
    ),
    "a dead man's switch repeats every minute": (
        rule(for_=timedelta(0), repeat_interval=timedelta(minutes=1)),
        [
            Step(0, value(0.7), AlertState.FIRING, ("firing",)),
            Step(45, value(0.7), AlertState.FIRING),
            Step(60, value(0.7), AlertState.FIRING, ("firing",)),
            Step(120, value(0.7), AlertState.FIRING, ("firing",)),
        ],
    ),
    "firing is re-announced after resend interval": (
        rule(for_=timedelta(0)),
        [
            Step(0, value(0.7), AlertState.FIRING, ("firing",)),
            Step(4 * 3600 - 1, value(0.7), AlertState.FIRING),
            Step(4 * 3600, value(0.7), AlertState.FIRING, ("firing",)),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table(name: str) -> None:
    r, steps = TABLES[name]
    run(r, steps)


def test_alert_records_each_transition_and_renders_annotations() -> None:
    r = rule()
    first = evaluate(r, (), result=value(0.7), now=T0)
    firing = evaluate(r, first.alerts, result=value(0.75), now=T0 + timedelta(seconds=30))
    (alert,) = firing.alerts
    assert alert.active_at == T0
    assert alert.fired_at == alert.last_sent_at == T0 + timedelta(seconds=30)
    assert dict(alert.labels) == {
        "alertname": "ApiLatencyP95High",
        "route": "/properties",
        "severity": "page",
    }
    assert dict(alert.annotations) == {"summary": "p95 0.75 on /properties"}
    resolved = evaluate(r, firing.alerts, result=NO_DATA, now=T0 + timedelta(seconds=45))
    (note,) = resolved.notifications
    assert note.alert.resolved_at == T0 + timedelta(seconds=45)
    assert note.dedup_key == alert.fingerprint
    assert [c.state for c in resolved.changes] == [AlertState.RESOLVED]


def test_one_alert_per_label_set() -> None:
    r = rule(for_=timedelta(0))
    result = Vector.of(Sample((("route", f"/r{i}"),), 0.9) for i in range(3))
    outcome = evaluate(r, (), result=result, now=T0)
    assert len({a.fingerprint for a in outcome.alerts}) == 3
    assert len(outcome.notifications) == 3
    partly = Vector((Sample((("route", "/r0"),), 0.9),))
    later = evaluate(r, outcome.alerts, result=partly, now=T0 + timedelta(seconds=15))
    assert len(later.alerts) == 1 and len(later.notifications) == 2


def test_rule_labels_win_over_series_labels() -> None:
    r = rule(for_=timedelta(0))
    result = Vector((Sample((("alertname", "x"), ("severity", "low")), 0.9),))
    (alert,) = evaluate(r, (), result=result, now=T0).alerts
    assert dict(alert.labels) == {"alertname": "ApiLatencyP95High", "severity": "page"}


# --- properties ------------------------------------------------------------------------------

results = st.one_of(
    st.just(FAILED),
    st.just(NO_DATA),
    st.builds(
        lambda vs: Vector.of(Sample((("route", f"/r{i}"),), v) for i, v in enumerate(vs)),
        st.lists(st.floats(0, 1), min_size=1, max_size=3),
    ),
)
steps = st.lists(st.tuples(st.integers(1, 40), results), max_size=15)
rules = st.builds(
    lambda f, k, nd: rule(
        for_=timedelta(seconds=f), keep_firing_for=timedelta(seconds=k), no_data=nd
    ),
    st.integers(0, 90),
    st.integers(0, 60),
    st.sampled_from(list(NoData)),
)


class Turn(NamedTuple):
    now: datetime
    previous: tuple[Alert, ...]
    result: QueryResult
    outcome: Evaluation


def replay(r: Rule, script: list[tuple[int, QueryResult]]) -> list[Turn]:
    alerts: tuple[Alert, ...] = ()
    now = T0
    turns = []
    for gap, result in script:
        now += timedelta(seconds=gap)
        outcome = evaluate(r, alerts, result=result, now=now)
        turns.append(Turn(now, alerts, result, outcome))
        alerts = outcome.alerts
    return turns


# No per-example deadline: a loaded 2-core CI machine is slow, not wrong.
unhurried = settings(deadline=None)


@unhurried
@given(rules, steps)
def test_never_firing_before_for_has_elapsed(
    r: Rule, script: list[tuple[int, QueryResult]]
) -> None:
    for turn in replay(r, script):
        for alert in turn.outcome.alerts:
            if alert.state is AlertState.FIRING:
                assert alert.fired_at is not None
                assert alert.fired_at - alert.active_at >= r.for_
                assert alert.fired_at <= turn.now


@unhurried
@given(rules, steps, st.integers(1, 10_000))
def test_a_failed_query_never_resolves(
    r: Rule, script: list[tuple[int, QueryResult]], gap: int
) -> None:
    turns = replay(r, script)
    previous = turns[-1].outcome.alerts if turns else ()
    now = (turns[-1].now if turns else T0) + timedelta(seconds=gap)
    outcome = evaluate(r, previous, result=FAILED, now=now)
    assert outcome.failed
    assert outcome.alerts == tuple(previous)
    assert outcome.notifications == () and outcome.changes == ()


@unhurried
@given(rules, steps)
def test_identical_inputs_give_identical_outputs(
    r: Rule, script: list[tuple[int, QueryResult]]
) -> None:
    for turn in replay(r, script):
        again = evaluate(r, turn.previous, result=turn.result, now=turn.now)
        assert _comparable(again) == _comparable(turn.outcome)


@unhurried
@given(rules, steps)
def test_every_firing_alert_is_announced_and_resolves_once(
    r: Rule, script: list[tuple[int, QueryResult]]
) -> None:
    firing: set[str] = set()
    for turn in replay(r, script):
        for note in turn.outcome.notifications:
            if note.status == "resolved":
                assert note.dedup_key in firing
                firing.discard(note.dedup_key)
            else:
                firing.add(note.dedup_key)
        active = {a.fingerprint for a in turn.outcome.alerts if a.state is AlertState.FIRING}
        assert firing == active


def _comparable(outcome: object) -> str:
    # NaN (the no-data alert's value) is never equal to itself; compare the text form.
    return repr(outcome).replace("nan", "NaN")


def test_nan_value_never_holds_the_condition() -> None:
    assert not rule().holds(math.nan)
