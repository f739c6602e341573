"""The alert state machine: a pure function of (rule, previous alerts, query result, now).

    inactive ──condition true──▶ pending ──true for `for`──▶ firing ──false for
        ▲                           │                                `keep_firing_for`──▶ resolved
        └──────condition false──────┘

One alert per label set. Nothing here reads a clock or does I/O, so tests step a fixed
clock (the scheduler is the only caller that reads the time):

    >>> from datetime import UTC, datetime, timedelta
    >>> from alerts.engine.query import Sample, Vector
    >>> from alerts.rules.rule import Op, RawQuery, Rule
    >>> rule = Rule(name="Hot", group="g", query=RawQuery("x"), for_=timedelta(seconds=30))
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> hot = Vector((Sample((("host", "a"),), 91.0),))
    >>> first = evaluate(rule, (), result=hot, now=t0)
    >>> [a.state.value for a in first.alerts]
    ['pending']
    >>> later = evaluate(rule, first.alerts, result=hot, now=t0 + timedelta(seconds=30))
    >>> [a.state.value for a in later.alerts], [n.status for n in later.notifications]
    (['firing'], ['firing'])
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from alerts.engine.query import Examples, Labels, QueryFailed, QueryResult
from alerts.rules import template
from alerts.rules.rule import NoData, Rule


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(labels: Labels) -> str:
    """Stable identity of an alert (its full label set): the notification dedup key."""
    text = "\x1f".join(f"{name}\x1e{value}" for name, value in labels)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Alert:
    """One alert of one rule for one label set, with when each transition happened."""

    rule: str
    labels: Labels
    state: AlertState
    value: float
    active_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_sent_at: datetime | None = None
    keep_firing_since: datetime | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    op: str | None = None
    """The rule's comparison (``>``), so a message can say "0.8 > 0.5"; None for raw PromQL."""
    threshold: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class Notification:
    """Tell receivers about ``alert`` (firing or resolved); deduplicate on ``dedup_key``."""

    alert: Alert
    at: datetime
    context: Examples | None = None
    """Example traces and slow statements, looked up when it fires (``alerts.engine.context``)."""

    @property
    def status(self) -> str:
        return "resolved" if self.alert.state is AlertState.RESOLVED else "firing"

    @property
    def dedup_key(self) -> str:
        return self.alert.fingerprint


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation produced."""

    alerts: tuple[Alert, ...]
    """Pending and firing alerts after the evaluation, by fingerprint."""
    changes: tuple[Alert, ...] = ()
    """Alerts whose state changed, in their new state (also inactive and resolved ones)."""
    notifications: tuple[Notification, ...] = ()
    failed: bool = False


def _sorted(alerts: Iterable[Alert]) -> tuple[Alert, ...]:
    return tuple(sorted(alerts, key=lambda alert: alert.fingerprint))


def _alert_labels(rule: Rule, series: Labels) -> Labels:
    # Rule labels win over series labels, and alertname over both (as in Prometheus).
    merged = dict(series)
    merged.update(rule.labels)
    merged["alertname"] = rule.name
    return tuple(sorted(merged.items()))


def _active(rule: Rule, result: QueryResult) -> dict[Labels, float] | None:
    """Label sets whose condition holds, or ``None`` when state must stay as it is."""
    if isinstance(result, QueryFailed):
        return None
    if not result.samples:
        if rule.no_data is NoData.KEEP:
            return None
        if rule.no_data is NoData.ALERTING:
            return {_alert_labels(rule, ()): math.nan}
        return {}
    return {
        _alert_labels(rule, sample.labels): sample.value
        for sample in result.samples
        if rule.holds(sample.value)
    }


def _annotate(rule: Rule, *, labels: Labels, value: float) -> tuple[tuple[str, str], ...]:
    label_map = dict(labels)
    return tuple(
        (name, template.render(source, labels=label_map, value=value))
        for name, source in rule.annotations
    )


def _with_condition(rule: Rule, alert: Alert) -> Alert:
    # Carried on every alert, also ones restored from the store without it.
    op = rule.op.value if rule.op is not None else None
    if alert.op == op and alert.threshold == rule.threshold:
        return alert
    return replace(alert, op=op, threshold=rule.threshold)


def evaluate(
    rule: Rule,
    previous: Iterable[Alert],
    *,
    result: QueryResult,
    now: datetime,
) -> Evaluation:
    """Advance ``rule``'s alerts to ``now`` given the query ``result``.

    A failed query (or no data with ``no_data: keep``) changes nothing: an outage of the
    metric source must not resolve alerts. Firing alerts are re-announced every
    ``rule.repeat_interval``; resolved ones are announced at once and leave the active set.
    """
    prior = {alert.fingerprint: _with_condition(rule, alert) for alert in previous}
    active = _active(rule, result)
    if active is None:
        return Evaluation(alerts=_sorted(prior.values()), failed=isinstance(result, QueryFailed))
    alerts: list[Alert] = []
    changes: list[Alert] = []
    notifications: list[Notification] = []
    seen: set[str] = set()

    def keep(alert: Alert, *, changed: bool) -> None:
        if alert.state is AlertState.FIRING and (
            changed
            or alert.last_sent_at is None
            or now - alert.last_sent_at >= rule.repeat_interval
        ):
            alert = replace(alert, last_sent_at=now)
            notifications.append(Notification(alert=alert, at=now))
        if changed:
            changes.append(alert)
        alerts.append(alert)

    for labels, value in sorted(active.items()):
        old = prior.get(fingerprint(labels))
        seen.add(fingerprint(labels))
        alert = _advance(rule, old, labels=labels, value=value, now=now)
        keep(alert, changed=old is None or old.state is not alert.state)

    for key, old in sorted(prior.items()):
        if key in seen:
            continue
        if old.state is AlertState.PENDING:
            changes.append(replace(old, state=AlertState.INACTIVE))
            continue
        since = old.keep_firing_since or now
        if now - since < rule.keep_firing_for:
            keep(replace(old, keep_firing_since=since), changed=False)
            continue
        resolved = replace(old, state=AlertState.RESOLVED, resolved_at=now, last_sent_at=now)
        changes.append(resolved)
        notifications.append(Notification(alert=resolved, at=now))

    return Evaluation(
        alerts=_sorted(alerts), changes=tuple(changes), notifications=tuple(notifications)
    )


def _advance(
    rule: Rule, old: Alert | None, *, labels: Labels, value: float, now: datetime
) -> Alert:
    """The alert for ``labels`` while its condition holds: new and pending, or ``old`` with
    the new value, firing once it has held for ``for``."""
    annotations = _annotate(rule, labels=labels, value=value)
    if old is None:
        alert = Alert(
            rule=rule.name,
            labels=labels,
            state=AlertState.PENDING,
            value=value,
            active_at=now,
            annotations=annotations,
            op=rule.op.value if rule.op is not None else None,
            threshold=rule.threshold,
        )
    else:
        alert = replace(old, value=value, annotations=annotations, keep_firing_since=None)
    if alert.state is AlertState.PENDING and now - alert.active_at >= rule.for_:
        alert = replace(alert, state=AlertState.FIRING, fired_at=now)
    return alert
