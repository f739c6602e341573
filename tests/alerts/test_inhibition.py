"""Inhibition: while an alert that explains others fires, their notifications are held back
and counted; Alertmanager's traps avoided (an alert never inhibits itself, two alerts
matching both sides do not hold each other back, an ``equal`` label missing on both sides
is not equal); the receivers file's rules, errors named; the shipped defaults."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.delivery.inhibition import DEFAULT_RULES, Inhibitor, InhibitRule
from alerts.delivery.receivers import load_receivers
from alerts.delivery.stages import Inhibit, Intake, Route
from alerts.engine.query import labels_of
from alerts.engine.state import Alert, AlertState, Notification
from alerts.errors import ReceiverFileError

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def alert(name: str, **labels: str) -> Alert:
    return Alert(
        rule=name,
        labels=labels_of({"alertname": name, **labels}),
        state=AlertState.FIRING,
        value=1.0,
        active_at=T0,
        fired_at=T0,
    )


def inhibitor(rules: Iterable[InhibitRule], *firing: Alert) -> Inhibitor:
    return Inhibitor(rules, firing=lambda: firing)


def held(inhibiting: Inhibitor, target: Alert) -> bool:
    return inhibiting.inhibiting(dict(target.labels), target.fingerprint) is not None


def test_a_database_outage_holds_back_the_error_rate_latency_and_burn_alerts() -> None:
    down = alert("DatabaseUnavailable", severity="page")
    shipped = inhibitor(DEFAULT_RULES, down)
    for name, labels in (
        ("ApiErrorRateHigh", {}),
        ("ApiLatencyP95High", {"route": "/properties"}),
        ("ErrorBudgetBurn", {"slo": "api-availability", "severity": "page"}),
    ):
        assert held(shipped, alert(name, **labels)), name
    assert not held(shipped, alert("CacheUnavailable", cache="properties"))
    assert not held(shipped, down)  # never itself
    assert not held(inhibitor(DEFAULT_RULES), alert("ApiErrorRateHigh"))  # nothing firing


def test_an_instance_down_holds_back_that_instances_alerts_only() -> None:
    down = alert("InstanceDown", instance="api-2:8000", job="api")
    shipped = inhibitor(DEFAULT_RULES, down)
    assert held(shipped, alert("MemoryLeakSuspected", instance="api-2:8000", job="api"))
    assert not held(shipped, alert("MemoryLeakSuspected", instance="api-1:8000", job="api"))
    # Two instances down: each matches both sides of the rule; neither holds the other back.
    other = alert("InstanceDown", instance="api-1:8000", job="api")
    assert not held(inhibitor(DEFAULT_RULES, down, other), other)


def test_an_equal_label_missing_on_both_sides_is_not_equal() -> None:
    rule = InhibitRule.parse(
        source=['alertname="Outage"'], target=['severity="warning"'], equal=["cluster"]
    )
    source = alert("Outage")
    assert not held(inhibitor([rule], source), alert("Slow", severity="warning"))
    source = alert("Outage", cluster="eu")
    assert held(inhibitor([rule], source), alert("Slow", severity="warning", cluster="eu"))
    assert not held(inhibitor([rule], source), alert("Slow", severity="warning", cluster="us"))


def test_the_stage_marks_and_counts_an_inhibited_notification() -> None:
    counted: list[tuple[str, str]] = []
    stage = Inhibit(
        inhibitor(DEFAULT_RULES, alert("DatabaseUnavailable")),
        lambda receiver, outcome: counted.append((receiver, outcome)),
    )
    errors = alert("ApiErrorRateHigh", severity="page")
    routed = Route(("hook", "pager"))(Intake(Notification(errors, at=T0)), now=T0)
    muted = stage(routed, now=T0)
    assert muted is not None and muted.muted_by is not None
    assert muted.muted_by.startswith("inhibited by DatabaseUnavailable")
    assert sorted(counted) == [("hook", "inhibited"), ("pager", "inhibited")]
    free = Inhibit(inhibitor(DEFAULT_RULES), lambda r, o: counted.append((r, o)))
    assert free(routed, now=T0) == routed


def test_the_resolution_of_a_held_back_firing_is_held_back_too() -> None:
    """Nobody was told it fired: nobody is told it resolved, even after the source did."""
    firing: list[Alert] = [alert("DatabaseUnavailable")]
    stage = Inhibit(Inhibitor(DEFAULT_RULES, firing=lambda: firing), lambda r, o: None)
    errors = alert("ApiErrorRateHigh")
    route = Route(("hook",))
    assert stage(route(Intake(Notification(errors, at=T0)), now=T0), now=T0).muted_by  # type: ignore[union-attr]
    firing.clear()  # the database is back first
    resolved = replace(errors, state=AlertState.RESOLVED, resolved_at=T0)
    held = stage(route(Intake(Notification(resolved, at=T0)), now=T0), now=T0)
    assert held is not None and held.muted_by == "its firing was inhibited"
    # A later episode, never held back, is told as usual.
    later = replace(errors, active_at=T0.replace(hour=10))
    told = route(Intake(Notification(replace(later, state=AlertState.RESOLVED), at=T0)), now=T0)
    assert stage(told, now=T0) == told


def _receivers(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "receivers.yml"
    path.write_text("receivers: []\nroute: {receivers: [console]}\n" + text)
    return path


def test_the_receivers_files_rules_replace_the_defaults_and_none_turns_them_off(
    tmp_path: Path,
) -> None:
    assert load_receivers(_receivers(tmp_path, ""), environ={}).inhibit_rules is None
    off = load_receivers(_receivers(tmp_path, "inhibit_rules: []\n"), environ={})
    assert off.inhibit_rules == ()
    mine = load_receivers(
        _receivers(
            tmp_path,
            "inhibit_rules:\n"
            "  - source_matchers: ['alertname=\"Outage\"']\n"
            "    target_matchers: ['severity=~\"warning|info\"']\n"
            "    equal: [cluster]\n",
        ),
        environ={},
    )
    assert mine.inhibit_rules is not None and len(mine.inhibit_rules) == 1
    assert mine.inhibit_rules[0].equal == ("cluster",)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("inhibit_rules: {}\n", "inhibit_rules"),
        ("inhibit_rules: [{source: x}]\n", "inhibit_rules.0"),
        (
            "inhibit_rules: [{source_matchers: ['alertname=\"A\"'], target_matchers: []}]\n",
            "inhibit_rules.0.target_matchers",
        ),
        (
            "inhibit_rules: [{source_matchers: ['a=~\"((\"'], target_matchers: ['b=\"c\"']}]\n",
            "inhibit_rules.0.source_matchers.0",
        ),
        (
            "inhibit_rules: [{source_matchers: ['a=\"b\"'], target_matchers: ['b=\"c\"'],"
            " equal: ['not a label']}]\n",
            "inhibit_rules.0.equal",
        ),
    ],
)
def test_a_bad_inhibit_rule_names_the_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = _receivers(tmp_path, text)
    with pytest.raises(ReceiverFileError) as raised:
        load_receivers(path, environ={})
    assert str(path) in str(raised.value) and f"field {field}" in str(raised.value)


def test_a_resolution_is_told_to_whoever_heard_it_fire() -> None:
    """Told before the source fired, or told later (a group message, a reminder, once the
    source stopped): its resolution goes out, source firing or not."""
    firing: list[Alert] = []
    stage = Inhibit(Inhibitor(DEFAULT_RULES, firing=lambda: firing), lambda r, o: None)
    route = Route(("hook",))
    errors = alert("ApiErrorRateHigh")
    resolved = replace(errors, state=AlertState.RESOLVED, resolved_at=T0)
    told = route(Intake(Notification(errors, at=T0)), now=T0)
    assert stage(told, now=T0) == told  # nothing explains it yet: told
    firing.append(alert("DatabaseUnavailable"))
    closing = route(Intake(Notification(resolved, at=T0)), now=T0)
    assert stage(closing, now=T0) == closing  # it was told: so is its end
    # Held back while the source fired, then told by a later message: its end is told too.
    later = replace(errors, active_at=T0.replace(hour=11))
    held = stage(route(Intake(Notification(later, at=T0)), now=T0), now=T0)
    assert held is not None and held.muted_by is not None
    stage.held.told(later)
    ends = route(Intake(Notification(replace(later, state=AlertState.RESOLVED), at=T0)), now=T0)
    assert stage(ends, now=T0) == ends
