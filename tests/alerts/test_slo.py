"""Service-level objectives: OpenSLO files validated with file, SLO and field named; their
burn-rate rules accepted by promtool; the generated promtool tests pass and fail when the
rules are wrong; and on raw request counters a burst of failures pages within two minutes,
a steady 0.2 % error rate never pages, and a slow burn opens a ticket."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.slo import DEFAULT_SLOS
from alerts.slo.model import SloFileError, load_slos
from alerts.slo.rules import PAIRS, alerting_groups, burn_tests, first_page, slo_rule_groups
from tests.support.prometheus import binary

GOOD = yaml.safe_load(DEFAULT_SLOS.read_text().split("---")[0])


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120)


def write(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=200))
    return path


def test_the_shipped_objectives_load() -> None:
    slos = {slo.name: slo for slo in load_slos([DEFAULT_SLOS])}
    assert set(slos) == {"api-availability", "api-latency"}
    assert slos["api-availability"].target == 0.999 and slos["api-latency"].target == 0.99
    assert slos["api-availability"].window.days == 30
    assert first_page(slos["api-availability"]) <= 2  # the workbook's ~1 minute at 99.9 %


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(apiVersion="openslo/v2"), "field apiVersion: must be openslo/v1"),
        (lambda d: d["metadata"].update(name="Bad Name"), "field metadata.name"),
        (lambda d: d["spec"]["objectives"][0].update(target=99.9), "objectives.0.target"),
        (lambda d: d["spec"]["timeWindow"][0].update(duration="1h"), "at least 1d"),
        (
            lambda d: d["spec"]["indicator"]["spec"]["ratioMetric"].pop("total"),
            "ratioMetric.total: is required",
        ),
        (
            lambda d: d["spec"]["indicator"]["spec"]["ratioMetric"]["bad"]["metricSource"][
                "spec"
            ].update(query="sum(rate(x[5m]))"),
            "bad.metricSource.spec.query: a PromQL query using {{.window}}",
        ),
        (lambda d: d["spec"].update(budgetingMethod="Timeslices"), "only Occurrences"),
    ],
)
def test_a_mistake_names_file_slo_and_field(tmp_path: Path, change: Any, named: str) -> None:
    document = yaml.safe_load(yaml.safe_dump(GOOD))
    change(document)
    path = write(tmp_path / "mine.yml", document)
    with pytest.raises(SloFileError) as raised:
        load_slos([path])
    message = str(raised.value)
    assert message.startswith(f"{path}: SLO ") and named in message, message


def test_the_exported_rules_pass_promtool_and_their_generated_tests(tmp_path: Path) -> None:
    slos = load_slos([DEFAULT_SLOS])
    rules = write(tmp_path / "slo-rules.yml", {"groups": slo_rule_groups(slos)})
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    write(tmp_path / "slo-alerts.yml", {"groups": alerting_groups(slos)})
    tests = write(tmp_path / "slo-tests.yml", burn_tests(slos, "slo-alerts.yml"))
    passed = promtool("test", "rules", str(tests))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    # The generated tests can fail: rules paging at half the workbook's factor do not pass.
    lenient = [
        pair.__class__(pair.severity, pair.factor / 2, pair.long, pair.short) for pair in PAIRS
    ]
    write(tmp_path / "slo-alerts.yml", {"groups": alerting_groups(slos, lenient)})
    failed = promtool("test", "rules", str(tests))
    assert failed.returncode != 0 and "FAILED" in failed.stdout + failed.stderr


def _counters(healthy: str, failing: str) -> list[dict[str, str]]:
    name = "http_server_request_duration_seconds_count"
    return [
        {"series": f'{name}{{route="/properties",status_code="200"}}', "values": healthy},
        {"series": f'{name}{{route="/properties",status_code="500"}}', "values": failing},
    ]


def _alerts(severity: str) -> str:
    return f'ALERTS{{alertname="ErrorBudgetBurn",alertstate="firing",severity="{severity}"}}'


def _firing(severity: str) -> list[dict[str, Any]]:
    labels = (
        f'ALERTS{{alertname="ErrorBudgetBurn", alertstate="firing", severity="{severity}", '
        'service="dynoscope-api", slo="api-availability"}'
    )
    return [{"labels": labels, "value": 1}]


def test_on_raw_counters_bursts_page_steady_errors_do_not_and_slow_burns_open_tickets(
    tmp_path: Path,
) -> None:
    (availability,) = [s for s in load_slos([DEFAULT_SLOS]) if s.name == "api-availability"]
    write(tmp_path / "slo-rules.yml", {"groups": slo_rule_groups([availability])})
    per_minute = 600  # 10 requests a second
    tests = [
        {  # an hour healthy, then every request fails: a page within two minutes
            "interval": "1m",
            "input_series": _counters(
                f"0+{per_minute}x60 {60 * per_minute}x10", f"0x60 {per_minute}+{per_minute}x10"
            ),
            "promql_expr_test": [
                {"expr": _alerts("page"), "eval_time": "59m", "exp_samples": []},
                {"expr": _alerts("page"), "eval_time": "62m", "exp_samples": _firing("page")},
            ],
        },
        {  # 0.2 % of requests fail for eight hours: twice the budget's pace, never a page
            "interval": "1m",
            "input_series": _counters("0+998x480", "0+2x480"),
            "promql_expr_test": [
                {"expr": _alerts("page"), "eval_time": f"{h}h", "exp_samples": []}
                for h in (1, 4, 8)
            ],
        },
        {  # 0.5 % for a day and more: five times the pace, a ticket and no page
            "interval": "1m",
            "input_series": _counters("0+995x1600", "0+5x1600"),
            "promql_expr_test": [
                {"expr": _alerts("ticket"), "eval_time": "25h", "exp_samples": _firing("ticket")},
                {"expr": _alerts("page"), "eval_time": "25h", "exp_samples": []},
            ],
        },
    ]
    cases = write(
        tmp_path / "raw-tests.yml",
        {"rule_files": ["slo-rules.yml"], "evaluation_interval": "1m", "tests": tests},
    )
    result = promtool("test", "rules", str(cases))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_command_exports_and_checks(tmp_path: Path) -> None:
    from dynoscope.cli import main

    assert main(["slo", "check"]) == 0
    assert main(["slo", "export", "-o", str(tmp_path / "r.yml"), "--tests", str(tmp_path)]) == 0
    assert promtool("test", "rules", str(tmp_path / "slo-tests.yml")).returncode == 0
    bad = write(tmp_path / "bad.yml", {"apiVersion": "openslo/v1", "kind": "SLO"})
    assert main(["slo", "check", str(bad)]) == 1
