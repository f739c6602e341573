"""The exported rule file is what Prometheus accepts and behaves as the engine does.

``promtool test rules`` replays series in promtool's ``input_series`` notation and checks,
for each shipped alert, that it fires on bad data (with the annotations the engine itself
would render) and stays quiet on healthy data.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.errors import ExportError
from alerts.rules import template
from alerts.rules.export import export_rules, export_yaml, record_name
from alerts.rules.loader import DEFAULT_RULES, load_rules
from alerts.rules.rule import Group, RawQuery, Rule, RuleSet, SignalQuery
from dynoscope.cli import main as cli
from tests.alerts.test_loader import SHIPPED
from tests.support.prometheus import binary

API = 'instance="a:8000", job="api"'
H = "http_server_request_duration_seconds"
REJECTED = "http_server_rejected_requests_total"


def auth(endpoint: str, outcome: str) -> str:
    return f'auth_attempts_total{{{API}, endpoint="{endpoint}", outcome="{outcome}"}}'


SLOW = f'db_client_slow_queries_total{{{API}, operation="SELECT", table="properties"}}'
STORE_UP = 'dynoscope_alert_store_up{instance="s:9", job="alerts"}'
FAILURES = 'dynoscope_rule_evaluation_failures_total{instance="s:9", job="alerts", rule="X"}'


def db_errors(kind: str) -> str:
    return f'db_client_errors_total{{{API}, operation="CONNECT", error_type="{kind}"}}'


def cache(result: str) -> str:
    return f'cache_requests_total{{{API}, cache="properties", result="{result}"}}'


def bucket_series(route: str, counts: dict[str, str]) -> list[dict[str, str]]:
    return [
        {
            "series": f'{H}_bucket{{{API}, method="GET", route="{route}", '
            f'status_code="200", le="{le}"}}',
            "values": values,
        }
        for le, values in counts.items()
    ]


def latency(bucket: str, *, route: str = "/properties") -> list[dict[str, str]]:
    """Every request lands in the bucket ending at ``bucket``, 10 per 15 s."""
    bounds = ["0.05", "0.1", "0.2", "0.3", "1", "2.5", "+Inf"]
    at = bounds.index(bucket)
    return bucket_series(
        route, {le: "0+10x200" if i >= at else "0x200" for i, le in enumerate(bounds)}
    )


@dataclass
class Case:
    alert: str
    bad: list[dict[str, str]]
    healthy: list[dict[str, str]]
    at: str
    labels: dict[str, str]
    value: float
    extra_quiet: list[list[dict[str, str]]] = field(default_factory=list)


CASES = [
    Case(
        "DatabaseSlowQuery",
        bad=[
            {
                "series": SLOW,
                "values": "0+1x60",
            }
        ],
        healthy=[
            {
                "series": SLOW,
                "values": "0x60",
            }
        ],
        at="5m",
        labels={"instance": "a:8000"},
        value=4.0,
    ),
    Case(
        "ApiLatencyP95High",
        bad=latency("2.5"),  # p95 = 1 + 1.5 * 0.95
        healthy=latency("0.1"),
        at="15m",
        labels={"route": "/properties"},
        value=2.425,
        extra_quiet=[latency("0.3")],  # above the 200 ms target, under the 500 ms page
    ),
    Case(
        "ApiLatencyP95AboveTarget",
        bad=latency("0.3"),  # p95 = 0.2 + 0.1 * 0.95
        healthy=latency("0.1"),
        at="25m",
        labels={"route": "/properties"},
        value=0.295,
    ),
    Case(
        "CacheHitRateLow",
        bad=[
            {
                "series": 'cache_requests_total{cache="properties", result="hit", ' + API + "}",
                "values": "0+10x200",
            },
            {
                "series": 'cache_requests_total{cache="properties", result="miss", ' + API + "}",
                "values": "0+30x200",
            },
        ],
        healthy=[
            {
                "series": 'cache_requests_total{cache="properties", result="hit", ' + API + "}",
                "values": "0+30x200",
            },
            {
                "series": 'cache_requests_total{cache="properties", result="miss", ' + API + "}",
                "values": "0+10x200",
            },
        ],
        at="25m",
        labels={"cache": "properties"},
        value=0.25,
        extra_quiet=[
            [  # a bad ratio on too little traffic to mean anything
                {
                    "series": 'cache_requests_total{cache="properties", result="miss", '
                    + API
                    + "}",
                    "values": "0+1x200",
                },
            ]
        ],
    ),
    Case(
        "MemoryLeakSuspected",
        bad=[
            {"series": f"process_resident_memory_bytes{{{API}}}", "values": "100000000+500000x500"},
            {"series": f"process_start_time_seconds{{{API}}}", "values": "0x500"},
        ],
        healthy=[
            {"series": f"process_resident_memory_bytes{{{API}}}", "values": "100000000x500"},
            {"series": f"process_start_time_seconds{{{API}}}", "values": "0x500"},
        ],
        at="1h45m",
        labels={"instance": "a:8000", "job": "api"},
        value=120_000_000,
        extra_quiet=[
            [  # the same growth right after a restart at t=5000 s
                {
                    "series": f"process_resident_memory_bytes{{{API}}}",
                    "values": "100000000+500000x500",
                },
                {"series": f"process_start_time_seconds{{{API}}}", "values": "5000x500"},
            ]
        ],
    ),
    Case(
        "ApiErrorRateHigh",
        bad=[
            {
                "series": f'{H}_count{{{API}, method="GET", route="/p", status_code="500"}}',
                "values": "0+1x200",
            },
            {
                "series": f'{H}_count{{{API}, method="GET", route="/p", status_code="200"}}',
                "values": "0+9x200",
            },
        ],
        healthy=[
            {
                "series": f'{H}_count{{{API}, method="GET", route="/p", status_code="500"}}',
                "values": "0x200",
            },
            {
                "series": f'{H}_count{{{API}, method="GET", route="/p", status_code="200"}}',
                "values": "0+10x200",
            },
        ],
        at="15m",
        labels={},
        value=0.1,
    ),
    Case(
        "ApiOverloaded",
        bad=[{"series": f'{REJECTED}{{{API}, reason="overload"}}', "values": "0+45x60"}],
        healthy=[{"series": f'{REJECTED}{{{API}, reason="overload"}}', "values": "0x60"}],
        at="10m",
        labels={"instance": "a:8000"},
        value=3.0,
        extra_quiet=[  # a trickle under 1 request/s is not yet worth a page
            [{"series": f'{REJECTED}{{{API}, reason="overload"}}', "values": "0+6x60"}],
            # refusals by a rate limit are not overload
            [{"series": f'{REJECTED}{{{API}, reason="rate_limited"}}', "values": "0+45x60"}],
        ],
    ),
    Case(
        "AuthenticationAbuse",
        bad=[{"series": auth("login", "bad_credentials"), "values": "0+30x60"}],
        healthy=[
            {"series": auth("login", "success"), "values": "0+30x60"},
            {"series": auth("login", "bad_credentials"), "values": "0x60"},
        ],
        at="12m",
        labels={},
        value=2.0,
        extra_quiet=[  # a few typos a minute among many sign-ins are no attack
            [
                {"series": auth("login", "bad_credentials"), "values": "0+6x60"},
                {"series": auth("login", "success"), "values": "0+60x60"},
            ]
        ],
    ),
    Case(
        "InstanceDown",
        bad=[{"series": f"up{{{API}}}", "values": "0x40"}],
        healthy=[{"series": f"up{{{API}}}", "values": "1x40"}],
        at="5m",
        labels={"instance": "a:8000", "job": "api"},
        value=0.0,
    ),
    Case(
        "DatabaseUnavailable",
        bad=[{"series": db_errors("connection"), "values": "0+6x100"}],
        healthy=[{"series": db_errors("connection"), "values": "0x100"}],
        at="5m",
        labels={},
        value=0.4,
        extra_quiet=[  # constraint violations are the callers' doing, not an outage
            [{"series": db_errors("integrity"), "values": "0+6x100"}]
        ],
    ),
    Case(
        "CacheUnavailable",
        bad=[
            {"series": cache("error"), "values": "0+30x200"},
            {"series": cache("hit"), "values": "0+10x200"},
        ],
        healthy=[
            {"series": cache("error"), "values": "0x200"},
            {"series": cache("hit"), "values": "0+30x200"},
        ],
        at="10m",
        labels={"cache": "properties"},
        value=0.75,
        extra_quiet=[[{"series": cache("error"), "values": "0+1x200"}]],
    ),
    Case(
        "MonitorStoreDegraded",
        bad=[{"series": STORE_UP, "values": "0x40"}],
        healthy=[{"series": STORE_UP, "values": "1x40"}],
        at="5m",
        labels={},
        value=0.0,
    ),
    Case(
        "MonitorEvaluationFailing",
        bad=[
            {
                "series": FAILURES,
                "values": "0+1x60",
            }
        ],
        healthy=[
            {
                "series": FAILURES,
                "values": "0x60",
            }
        ],
        at="10m",
        labels={"rule": "X"},
        value=20.0,
    ),
]


def expected_alert(rule: Rule, case: Case) -> dict[str, Any]:
    labels = {**dict(rule.labels), **case.labels}
    annotations = {
        name: template.render(source, labels={**labels, "alertname": rule.name}, value=case.value)
        for name, source in rule.annotations
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def unit_tests(rules: RuleSet) -> list[dict[str, Any]]:
    tests = []
    for case in CASES:
        rule = rules.rule(case.alert)
        fires = {
            "eval_time": case.at,
            "alertname": case.alert,
            "exp_alerts": [expected_alert(rule, case)],
        }
        quiet = {"eval_time": case.at, "alertname": case.alert, "exp_alerts": []}
        tests.append({"interval": "15s", "input_series": case.bad, "alert_rule_test": [fires]})
        for series in [case.healthy, *case.extra_quiet]:
            tests.append({"interval": "15s", "input_series": series, "alert_rule_test": [quiet]})
    watchdog = expected_alert(rules.rule("Watchdog"), Case("Watchdog", [], [], "1m", {}, 1.0))
    tests.append(
        {
            "interval": "15s",
            "input_series": [],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "Watchdog", "exp_alerts": [watchdog]}
            ],
        }
    )
    return tests


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    path = tmp_path / "dynoscope.rules.yml"
    assert cli(["rules", "export", "--rules", str(DEFAULT_RULES), "-o", str(path)]) == 0
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_exported_file(exported: Path) -> None:
    result = promtool("check", "rules", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_shipped_alert_fires_on_bad_data_and_not_on_healthy(
    exported: Path, tmp_path: Path
) -> None:
    rules = load_rules([DEFAULT_RULES])
    # The capacity forecast needs hours of series: tests/alerts/test_forecast.py has its own.
    forecast = {"CapacityExhaustionForecast", "CapacityExhaustionImminent"}
    assert {case.alert for case in CASES} | {"Watchdog"} | forecast == SHIPPED
    tests = tmp_path / "tests.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(exported)],
                "evaluation_interval": "15s",
                "tests": unit_tests(rules),
            },
            sort_keys=False,
        )
    )
    result = promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_capacity_series_autoscalers_read_are_published_once() -> None:
    exported = export_rules(load_rules([DEFAULT_RULES]))
    records = [
        (entry["record"], entry.get("labels", {}))
        for group in exported["groups"]
        for entry in group["rules"]
        if "record" in entry
    ]
    assert records.count(("dynoscope:instances_needed", {})) == 1
    utilization = [labels for name, labels in records if name == "dynoscope:capacity_utilization"]
    assert utilization == [{"scope": "instance"}, {"scope": "fleet"}]


def test_the_first_forecast_rule_sizes_the_published_series(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yml"
    overrides.write_text(
        "overrides:\n"
        "  CapacityExhaustionImminent: {params: {rate_window: 10m, target_utilization: 0.5}}\n"
    )
    exported = tmp_path / "rules.yml"
    command = ["rules", "export", "--rules", str(DEFAULT_RULES), str(overrides), "-o"]
    assert cli([*command, str(exported)]) == 0
    text = exported.read_text()
    assert text.count("record: dynoscope:instances_needed") == 1
    assert "(0.7 * avg by ()" in text and "(0.5 * avg by ()" not in text
    result = promtool("check", "rules", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_sharing_a_question_share_one_recording_rule() -> None:
    rules = load_rules([DEFAULT_RULES])
    records = [
        entry["record"]
        for group in export_rules(rules)["groups"]
        for entry in group["rules"]
        if "record" in entry and "labels" not in entry
    ]
    assert len(records) == len(set(records))
    page, warning = rules.rule("ApiLatencyP95High"), rules.rule("ApiLatencyP95AboveTarget")
    assert isinstance(page.query, SignalQuery) and page.query == warning.query
    assert records.count(record_name(page.query)) == 1


def test_annotations_outside_the_exportable_subset_are_refused() -> None:
    rule = Rule(
        name="X",
        group="g",
        query=RawQuery("up == 0"),
        annotations=(("s", "{{ labels | length }}"),),
    )

    with pytest.raises(ExportError, match="rule X"):
        export_yaml(RuleSet(groups=(Group("g", interval=rules_interval(), rules=(rule,)),)))


def rules_interval() -> Any:

    return timedelta(seconds=15)


def test_rules_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["rules", "check", str(DEFAULT_RULES)]) == 0
    assert f"ok: {len(SHIPPED)} rules" in capsys.readouterr().out
    assert cli(["rules", "check"]) == 0  # no file: the configured rules (here the shipped)
    assert f"ok: {len(SHIPPED)} rules" in capsys.readouterr().out
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups: [{name: g, rules: [{alert: A, signal: nope, window: 1m, op: '>', threshold: 1}]}]"
    )
    assert cli(["rules", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: rule A: field signal: unknown signal 'nope'" in err
    assert "Traceback" not in err
