from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.errors import RuleFileError
from alerts.rules.loader import DEFAULT_RULES, load_rules, rule_paths
from alerts.rules.rule import NoData, Op, SignalQuery

SHIPPED = {
    "DatabaseSlowQuery",
    "ApiLatencyP95High",
    "ApiLatencyP95AboveTarget",
    "CacheHitRateLow",
    "MemoryLeakSuspected",
    "ApiErrorRateHigh",
    "CapacityExhaustionForecast",
    "CapacityExhaustionImminent",
    "ApiOverloaded",
    "AuthenticationAbuse",
    "InstanceDown",
    "DatabaseUnavailable",
    "CacheUnavailable",
    "MonitorEvaluationFailing",
    "MonitorStoreDegraded",
    "Watchdog",
}

GOOD_RULE = """\
- alert: Slow
  signal: http_latency_p95_seconds
  by: [route]
  window: 5m
  op: ">"
  threshold: 0.5
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def rule_file(tmp_path: Path, rule: str, *, name: str = "rules.yml") -> Path:
    header = "groups:\n  - name: g\n    interval: 15s\n    rules:\n"
    return write(tmp_path / name, header + textwrap.indent(textwrap.dedent(rule), "      "))


def test_shipped_rules_load_with_the_briefs_thresholds() -> None:
    rules = load_rules([DEFAULT_RULES])
    assert {rule.name for rule in rules.rules} == SHIPPED
    page = rules.rule("ApiLatencyP95High")
    warning = rules.rule("ApiLatencyP95AboveTarget")
    assert (page.op, page.threshold, dict(page.labels)["severity"]) == (Op.GT, 0.5, "page")
    assert (warning.threshold, dict(warning.labels)["severity"]) == (0.2, "warning")
    cache = rules.rule("CacheHitRateLow")
    assert (cache.op, cache.threshold) == (Op.LT, 0.6)
    assert isinstance(cache.query, SignalQuery)
    assert cache.query.args.params.model_dump()["min_requests_per_second"] > 0
    memory = rules.rule("MemoryLeakSuspected")
    assert isinstance(memory.query, SignalQuery)
    assert "instance" in memory.query.args.by
    assert "process_start_time_seconds" in memory.query.promql
    assert rules.rule("Watchdog").repeat_interval == timedelta(minutes=1)


def test_unset_setting_means_the_shipped_file_and_pathsep_separates(tmp_path: Path) -> None:
    assert rule_paths(None) == [DEFAULT_RULES]
    assert rule_paths(f"{tmp_path}/a.yml:{tmp_path}/b") == [tmp_path / "a.yml", tmp_path / "b"]


def test_a_folder_loads_every_yaml_file(tmp_path: Path) -> None:
    rule_file(tmp_path, GOOD_RULE, name="a.yml")
    write(
        tmp_path / "b.yaml",
        """\
        groups:
          - name: other
            rules:
              - {alert: Raw, expr: "up == 0"}
        """,
    )
    (tmp_path / "notes.txt").write_text("ignored")
    rules = load_rules([tmp_path])
    assert [rule.name for rule in rules.rules] == ["Slow", "Raw"]
    assert rules.groups[1].interval == timedelta(seconds=15)


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        (GOOD_RULE.replace("http_latency_p95_seconds", "http_latncy"), "signal", "unknown signal"),
        (GOOD_RULE.replace("window: 5m", "window: 5 minutes"), "window", "invalid duration"),
        (GOOD_RULE + "  for: soon\n", "for", "invalid duration"),
        (GOOD_RULE.replace('  op: ">"\n', ""), "op", "required"),
        (GOOD_RULE.replace("  window: 5m\n", ""), "window", "required"),
        (GOOD_RULE + "  treshold: 3\n", "treshold", "unknown field"),
        (GOOD_RULE.replace("[route]", "[rout]"), "by", "rout not a label"),
        (
            GOOD_RULE + "  params: {min_requests_per_second: 1}\n",
            "params.min_requests_per_second",
            "unknown parameter",
        ),
        (
            GOOD_RULE + "  annotations: {summary: '{{ labels.rout }}'}\n",
            "annotations.summary",
            "bad template",
        ),
        (
            GOOD_RULE + "  annotations: {summary: '{{ value '}\n",
            "annotations.summary",
            "bad template",
        ),
        (
            GOOD_RULE + "  annotations: {summary: '{{ 1 / value }}'}\n",
            "annotations.summary",
            "ZeroDivisionError",
        ),
        (GOOD_RULE.replace("p95", "p5"), "signal", "p5 is not a quantile"),
        (GOOD_RULE.replace("p95", "p100"), "signal", "p100 is ambiguous"),
        (GOOD_RULE.replace("p95", "p500"), "signal", "it would mean 0.5, written p50"),
        (GOOD_RULE.replace("p95", "p00"), "signal", "p00 is not a quantile"),
        (GOOD_RULE.replace("p95", "p9999"), "signal", "pNNN for NNN/1000"),
        (GOOD_RULE + "  expr: up\n", "signal", "either a signal or a raw PromQL expr"),
        (GOOD_RULE + "  no_data: maybe\n", "no_data", "'ok', 'alerting' or 'keep'"),
    ],
)
def test_a_mistake_names_file_rule_and_field(
    tmp_path: Path, rule: str, field: str, message: str
) -> None:
    path = rule_file(tmp_path, rule)
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    (problem,) = caught.value.problems
    assert (problem.file, problem.rule, problem.field) == (str(path), "Slow", field)
    assert message in problem.message
    assert str(path) in str(caught.value) and "rule Slow" in str(caught.value)


def test_a_missing_alert_name_is_located_by_position(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "- {signal: heartbeat, window: 1m, op: '==', threshold: 1}\n")
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    (problem,) = caught.value.problems
    assert (problem.rule, problem.field) == ("#1 of group g", "alert")


def test_duplicate_alert_names_across_files_reject_the_whole_set(tmp_path: Path) -> None:
    first = rule_file(tmp_path, GOOD_RULE, name="a.yml")
    second = rule_file(tmp_path, GOOD_RULE, name="b.yml")
    second.write_text(second.read_text().replace("name: g", "name: h"))
    with pytest.raises(RuleFileError) as caught:
        load_rules([tmp_path])
    (problem,) = caught.value.problems
    assert (problem.file, problem.rule, problem.field) == (str(second), "Slow", "alert")
    assert str(first) in problem.message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    bad = GOOD_RULE.replace("5m", "5 min").replace("[route]", "[x]")
    path = rule_file(tmp_path, bad + GOOD_RULE.replace("Slow", "Other").replace(">", "~"))
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    fields = {(p.rule, p.field) for p in caught.value.problems}
    assert fields == {("Slow", "window"), ("Other", "op")}


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yml", "groups:\n  - name: [unclosed\n")
    with pytest.raises(RuleFileError, match=r"r\.yml: not valid YAML at line \d"):
        load_rules([path])


def test_raw_rules_cannot_use_signal_fields(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "- {alert: Raw, expr: up, threshold: 1, no_data: alerting}\n")
    with pytest.raises(RuleFileError) as caught:
        load_rules([path])
    assert {p.field for p in caught.value.problems} == {"threshold", "no_data"}


@pytest.mark.parametrize(
    ("name", "quantile"), [("p999", "0.999"), ("p05", "0.05"), ("p75", "0.75")]
)
def test_any_latency_quantile_is_a_signal(tmp_path: Path, name: str, quantile: str) -> None:
    path = rule_file(tmp_path, GOOD_RULE.replace("p95", name))
    (rule,) = load_rules([path]).rules
    assert rule.query.promql.startswith(f"histogram_quantile({quantile},")
    assert isinstance(rule.query, SignalQuery) and name in rule.query.signal


def test_an_override_file_changes_thresholds_without_editing_the_rules(tmp_path: Path) -> None:
    overrides = write(
        tmp_path / "overrides.yml",
        """\
        overrides:
          ApiLatencyP95High: {threshold: 0.8, for: 10m, labels: {team: api}}
          CacheHitRateLow: {params: {min_requests_per_second: 5}}
        """,
    )
    rules = load_rules([DEFAULT_RULES, overrides])
    latency = rules.rule("ApiLatencyP95High")
    assert (latency.threshold, latency.for_) == (0.8, timedelta(minutes=10))
    assert dict(latency.labels) == {"severity": "page", "team": "api"}
    cache = rules.rule("CacheHitRateLow").query
    assert isinstance(cache, SignalQuery)
    assert cache.args.params.model_dump() == {"min_requests_per_second": 5.0}
    assert load_rules([DEFAULT_RULES]).rule("ApiLatencyP95High").threshold == 0.5


def test_overrides_are_validated_like_rules(tmp_path: Path) -> None:
    overrides = write(
        tmp_path / "overrides.yml",
        """\
        overrides:
          NoSuchAlert: {threshold: 1}
          ApiLatencyP95High: {for: eventually}
          CacheHitRateLow: {params: {min_hits: 5}}
        """,
    )
    with pytest.raises(RuleFileError) as caught:
        load_rules([DEFAULT_RULES, overrides])
    found = {(p.file, p.rule, p.field) for p in caught.value.problems}
    assert found == {
        (str(overrides), "NoSuchAlert", None),
        (str(overrides), "ApiLatencyP95High", "for"),
        (str(DEFAULT_RULES), "CacheHitRateLow", "params.min_hits"),
    }


def test_no_data_is_an_explicit_choice(tmp_path: Path) -> None:
    path = rule_file(tmp_path, GOOD_RULE + "  no_data: alerting\n")
    (rule,) = load_rules([path]).rules
    assert rule.no_data is NoData.ALERTING
