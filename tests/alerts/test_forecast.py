"""The capacity forecast on synthetic growth, in Prometheus (``promtool test rules`` on the
exported file) and in the local source (the same series as snapshots, on a fixed clock).

One API instance with one core; its CPU counter is the integral of a utilisation that grows
linearly by 2 points an hour. With a 5 m rate window the utilisation Prometheus reads at T is
the mean over [T-5m, T], the utilisation at T-2.5m. Growth from 18 % leaves 24 h to 80 % at
7h02m30s (the warning fires 30 m later); growth from 62 % leaves 2 h at 7h02m30s (the page
fires 10 m later). Each starts after the 6 h trend window has filled; the exported rules are
evaluated every 15 s, so shorter series keep the test short.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.engine.window import Snapshot, Window
from alerts.rules import template
from alerts.rules.capacity import ForecastParams
from alerts.rules.loader import DEFAULT_RULES, load_rules
from alerts.rules.rule import Rule, SignalQuery
from alerts.rules.signals import signal_named
from dynoscope.cli import main as cli
from tests.support.prometheus import binary

pytestmark = pytest.mark.prometheus

API = 'instance="a:8000", job="api"'
CPU = f"process_cpu_seconds_total{{{API}}}"
CORES = f'dynoscope_instance_cores{{{API}, workers="1"}}'
MINUTES = 8 * 60
GROWTH = 0.02  # points per hour
WARNING_START, PAGE_START = 0.8 - 31 * GROWTH, 0.8 - 9 * GROWTH  # 24 h and 2 h left at 7 h
LAG_HOURS = 2.5 / 60  # a 5 m rate is the mean utilisation, i.e. the value 2.5 m earlier

Utilisation = Callable[[float], float]
"""Utilisation of one core at an hour."""


def growing(start: float) -> Utilisation:
    return lambda hour: start + GROWTH * hour


def flat(hour: float) -> float:
    return 0.5


def spike(hour: float) -> float:
    """30 % all along, but saturated for five minutes at 7 h."""
    return 1.0 if 7 <= hour < 7 + 5 / 60 else 0.3


def counter(utilisation: Utilisation) -> list[float]:
    """The CPU counter sampled every minute: the sum of each minute's CPU seconds."""
    values, total = [], 0.0
    for minute in range(MINUTES + 1):
        values.append(round(total, 6))
        total += 60 * utilisation((minute + 0.5) / 60)
    return values


def series(utilisation: Utilisation) -> list[dict[str, str]]:
    return [
        {"series": CPU, "values": " ".join(f"{v:g}" for v in counter(utilisation))},
        {"series": CORES, "values": f"1x{MINUTES}"},
    ]


def hours_left(start: float, at_hour: float) -> float:
    return (0.8 - growing(start)(at_hour - LAG_HOURS)) / GROWTH


def expected(rule: Rule, value: float) -> dict[str, Any]:
    labels = {**dict(rule.labels)}
    annotations = {
        name: template.render(source, labels={**labels, "alertname": rule.name}, value=value)
        for name, source in rule.annotations
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def at(hours: int, minutes: int = 0) -> str:
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def promtool_tests() -> list[dict[str, Any]]:
    rules = load_rules([DEFAULT_RULES])
    warning, page = (
        rules.rule("CapacityExhaustionForecast"),
        rules.rule("CapacityExhaustionImminent"),
    )

    def check(when: str, name: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"eval_time": when, "alertname": name, "exp_alerts": alerts}

    ticket = [
        check(at(7), warning.name, []),  # 24 h left at 7h02m30s, pending for 30 m
        check(at(7, 20), warning.name, []),
        check(at(7, 45), warning.name, [expected(warning, hours_left(WARNING_START, 7.75))]),
        check(at(7, 45), page.name, []),
    ]
    paging = [
        check(at(7, 5), page.name, []),  # 2 h left at 7h02m30s, pending for 10 m
        check(at(7, 20), page.name, [expected(page, hours_left(PAGE_START, 7 + 1 / 3))]),
        check(at(7, 20), warning.name, [expected(warning, hours_left(PAGE_START, 7 + 1 / 3))]),
    ]
    quiet = [
        check(when, name, [])
        for when in (at(6, 30), at(7, 3), at(7, 30), at(8))
        for name in (warning.name, page.name)
    ]
    return [
        {
            "interval": "1m",
            "input_series": series(growing(WARNING_START)),
            "alert_rule_test": ticket,
        },
        {"interval": "1m", "input_series": series(growing(PAGE_START)), "alert_rule_test": paging},
        {"interval": "1m", "input_series": series(flat), "alert_rule_test": quiet},
        {"interval": "1m", "input_series": series(spike), "alert_rule_test": quiet},
    ]


def test_promtool_forecast_fires_at_the_right_hour_and_not_on_flat_or_spiky_load(
    tmp_path: Path,
) -> None:
    exported = tmp_path / "dynoscope.rules.yml"
    assert cli(["rules", "export", "--rules", str(DEFAULT_RULES), "-o", str(exported)]) == 0
    tests = tmp_path / "forecast-tests.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(exported)],
                "evaluation_interval": "1m",
                "tests": promtool_tests(),
            },
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [binary("promtool"), "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def window_of(utilisation: Utilisation, *, until_minute: int, span: timedelta) -> Window:
    """The local source's view: a snapshot a minute, the trend window's worth."""
    values = counter(utilisation)
    first = until_minute - int(span.total_seconds() // 60)
    snapshots = [
        Snapshot(
            at=minute * 60.0,
            values={
                "process_cpu_seconds_total": {
                    (("instance", "a:8000"), ("job", "api")): values[minute]
                },
                "dynoscope_instance_cores": {
                    (("instance", "a:8000"), ("job", "api"), ("workers", "1")): 1.0
                },
            },
        )
        for minute in range(max(0, first), until_minute + 1)
    ]
    return Window(snapshots, now=until_minute * 60.0)


@pytest.mark.parametrize(("start", "hour"), [(WARNING_START, 7.75), (PAGE_START, 7 + 1 / 3)])
def test_local_forecast_agrees_with_the_promql_arithmetic(start: float, hour: float) -> None:
    rule = load_rules([DEFAULT_RULES]).rule("CapacityExhaustionForecast")
    assert isinstance(rule.query, SignalQuery)
    args = rule.query.args
    assert isinstance(args.params, ForecastParams)
    window = window_of(growing(start), until_minute=round(hour * 60), span=args.window)
    samples = signal_named("capacity_hours_to_saturation").samples(window, args)
    assert len(samples) == 1 and samples[0].labels == ()
    assert samples[0].value == pytest.approx(hours_left(start, hour), abs=0.05)


def test_local_forecast_is_absent_on_flat_load_and_far_off_after_a_spike() -> None:
    rule = load_rules([DEFAULT_RULES]).rule("CapacityExhaustionForecast")
    assert isinstance(rule.query, SignalQuery)
    args = rule.query.args
    forecast = signal_named("capacity_hours_to_saturation")
    assert forecast.samples(window_of(flat, until_minute=7 * 60, span=args.window), args) == ()
    for minute in (7 * 60 + 3, 7 * 60 + 6):
        after = forecast.samples(window_of(spike, until_minute=minute, span=args.window), args)
        assert all(not rule.holds(sample.value) for sample in after), after
