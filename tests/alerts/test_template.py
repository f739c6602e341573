"""A template that fails for any reason is a rule-file problem at load time, and its source
text (not a failed group) at run time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from alerts.engine.query import Sample, Vector
from alerts.engine.state import AlertState, evaluate
from alerts.rules import template
from alerts.rules.rule import Op, RawQuery, Rule

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
DIVIDE = "{{ 1 / value }} per second"


def test_check_turns_any_error_into_a_value_error() -> None:
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        template.check(DIVIDE, label_names=None)
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        template.check(DIVIDE, label_names=["route"])


def test_render_falls_back_to_the_source_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    source = "{{ 1 / value }} per second, logged once"
    with caplog.at_level(logging.WARNING, logger="dynoscope.alerts"):
        assert template.render(source, labels={}, value=0.0) == source
        assert template.render(source, labels={}, value=0.0) == source
    assert template.render(source, labels={}, value=4.0) == "0.25 per second, logged once"
    logged = [r for r in caplog.records if "ZeroDivisionError" in r.getMessage()]
    assert len(logged) == 1


def test_a_failing_annotation_does_not_fail_the_evaluation() -> None:
    rule = Rule(
        name="Hot",
        group="g",
        query=RawQuery("x"),
        op=Op.GE,
        threshold=0,
        annotations=(("summary", DIVIDE),),
    )
    outcome = evaluate(rule, (), result=Vector((Sample((), 0.0),)), now=T0)
    (alert,) = outcome.alerts
    assert alert.state is AlertState.FIRING
    assert dict(alert.annotations) == {"summary": DIVIDE}
