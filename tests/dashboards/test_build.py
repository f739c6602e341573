"""The checked-in dashboards are what the code builds, and are what Grafana expects."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
from pathlib import Path

import pytest

from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named
from dashboards.catalogue import DIRECTORY, check, expected, render, write
from dashboards.errors import StaleDashboards
from dashboards.panels import narrowing
from dashboards.promql import metric_names, scope
from dashboards.scaling import scaling_health
from dynoscope.cli import main as cli
from tests.dashboards.support import models, panel_queries, used_variables

ROOT = Path(__file__).parents[2]
UIDS = {"scaling-health": "dynoscope-scaling-health", "alert-engine": "dynoscope-alert-engine"}


def test_checked_in_json_is_what_the_code_builds() -> None:
    check(DIRECTORY)  # StaleDashboards names the files: run `dynoscope dashboards build`


def test_a_stale_or_missing_file_is_named(tmp_path: Path) -> None:
    written = write(tmp_path)
    written[0].write_text(written[0].read_text().replace("Scaling", "Scalin"))
    written[1].unlink()
    with pytest.raises(StaleDashboards) as caught:
        check(tmp_path)
    assert set(caught.value.paths) == set(written)
    assert "dynoscope dashboards build" in str(caught.value)


def test_cli_builds_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["dashboards", "build", "--check", "-o", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert cli(["dashboards", "build", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alert-engine.json",
        "scaling-health.json",
    ]
    assert cli(["dashboards", "build", "--check", "-o", str(tmp_path)]) == 0


def test_fixed_uids_current_schema_no_import_placeholders() -> None:
    for name, model in models().items():
        assert model["uid"] == UIDS[name]
        assert model["schemaVersion"] >= 39
        text = json.dumps(model)
        assert "${DS_" not in text and "__inputs" not in model
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids)), name
        assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in model["panels"])


def test_every_variable_used_is_defined_and_every_one_defined_is_used() -> None:
    for name, model in models().items():
        defined = {variable["name"] for variable in model["templating"]["list"]}
        used = used_variables(model)
        assert used <= defined, f"{name}: dangling {sorted(used - defined)}"
        assert defined <= used, f"{name}: unused {sorted(defined - used)}"


def test_every_query_goes_through_the_data_source_variable() -> None:
    for name, model in models().items():
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
            assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)
            assert panel["targets"], f"{name}/{panel['title']} has no query"


@pytest.mark.parametrize(
    ("name", "by"),
    [
        ("http_latency_p50_seconds", ("route",)),
        ("http_latency_p95_seconds", ("route",)),
        ("http_latency_p99_seconds", ("route",)),
        ("http_error_ratio", ("route",)),
        ("http_requests_per_second", ("instance",)),
        ("db_slow_queries_per_minute", ("table",)),
        ("db_queries_per_request", ("instance",)),
        ("cache_hit_ratio", ("cache",)),
        ("memory_growth_bytes_per_hour", ("instance",)),
        ("http_rejected_requests_per_second", ("instance", "reason")),
    ],
)
def test_panels_reuse_the_signals_promql(name: str, by: tuple[str, ...]) -> None:
    signal = signal_named(name)
    promql = signal.promql(SignalArgs(by=by, params=signal.params()))
    exprs = [query.expr for query in panel_queries()]
    assert scope(promql, narrowing) in exprs


def test_latency_panel_asks_exemplars_and_draws_the_thresholds() -> None:
    model = render(scaling_health)
    (panel,) = [p for p in model["panels"] if p["title"].startswith("Latency")]
    assert all(target["exemplar"] for target in panel["targets"])
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [step["value"] for step in steps] == [None, 0.2, 0.5]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (le, route) (rate(a_bucket{x="y"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum by (le) (rate(b[1m])))", {"b"}),
        ("max without (job) (c) and on (instance, job) (time() - d > 1e3)", {"c", "d"}),
        ('sum(e{state="firing"}) or vector(0)', {"e"}),
        ('f{route=~"/a|b"} / ignoring (route) g', {"f", "g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_scope_adds_matchers_to_every_selector_and_keeps_existing_ones() -> None:
    expr = 'sum by (job) (rate(a{x="1"}[5m])) / sum(b)'
    narrowed = scope(expr, lambda metric: [f'm="{metric}"'])
    assert narrowed == 'sum by (job) (rate(a{x="1", m="a"}[5m])) / sum(b{m="b"})'
    assert scope("vector(1)", lambda metric: ["never"]) == "vector(1)"


def test_expected_files_live_where_the_provider_reads_them() -> None:
    assert {path.parent for path in expected()} == {ROOT / "dashboards" / "json"}


def test_dashboards_never_import_the_service() -> None:
    for path in sorted((ROOT / "dashboards").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [m for m in modules if m == "api" or m.startswith("api.")], path


@pytest.mark.parametrize(
    "name", ["dashboards.catalogue", "dashboards.panels", "dashboards.promql", "dashboards.push"]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0 and result.failed == 0
