"""Panel and variable builders shared by the dashboards, on grafana-foundation-sdk.

Every query goes through the dashboard's data source variable (``${datasource}``) and is
narrowed to the job, instance and route variables, so one JSON file works on any Grafana
that has a Prometheus data source, and no ``${DS_...}`` import placeholder is needed.

    >>> q = Query(signal("http_requests_per_second", by=("route",)), legend="{{route}}")
    >>> q.expr
    'sum by (route) (rate(http_server_request_duration_seconds_count[5m]))'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.models import common, dashboard

from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named
from dashboards.promql import scope
from instrumentation.names import (
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION,
)

PROMETHEUS_UID = "dynoscope-prometheus"
TRACES_UID = "dynoscope-jaeger"
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
ALL = ".*"
ROUTE_METRICS = (HTTP_SERVER_REQUEST_DURATION, HTTP_SERVER_ACTIVE_REQUESTS)
"""Metrics that carry a ``route`` label: only their selectors are narrowed by ``$route``."""


def signal(name: str, *, by: Sequence[str] = (), **params: Any) -> str:
    """The PromQL of the signal ``name`` as the rules use it (5 m window), grouped ``by``."""
    found = signal_named(name)
    return found.promql(SignalArgs(by=tuple(by), params=found.params(**params)))


@dataclass(frozen=True)
class Query:
    """One panel query: PromQL (before narrowing), its legend and whether to ask exemplars."""

    expr: str
    legend: str = ""
    exemplar: bool = False


@dataclass(frozen=True)
class Line:
    """A horizontal threshold drawn on a time series: ``value`` and its colour."""

    value: float
    color: str


def datasource_variable() -> builders.DatasourceVariable:
    current = dashboard.VariableOption(text="Prometheus", value=PROMETHEUS_UID)
    return (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(current)
    )


def label_variable(name: str, *, label: str, selector: str) -> builders.QueryVariable:
    """A multi-value variable listing ``name`` label values of ``selector``; All is ``.*``."""
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({selector}, {name})")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(dashboard.VariableOption(text="All", value="$__all"))
    )


def narrowing(metric: str) -> list[str]:
    """The matchers the dashboard variables add to a selector of ``metric``."""
    matchers = ['job=~"$job"', 'instance=~"$instance"']
    if metric.startswith(ROUTE_METRICS):
        matchers.append('route=~"$route"')
    return matchers


def _targets(queries: Sequence[Query]) -> list[prometheus.Dataquery]:
    targets = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(scope(query.expr, narrowing))
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
            .range()
        )
        if query.legend:
            target = target.legend_format(query.legend)
        if query.exemplar:
            target = target.exemplar(True)
        targets.append(target)
    return targets


def _steps(lines: Sequence[Line]) -> builders.ThresholdsConfig:
    steps = [dashboard.Threshold(value=None, color="green")]
    steps += [dashboard.Threshold(value=line.value, color=line.color) for line in lines]
    return builders.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(steps)


def series(
    title: str,
    *queries: Query,
    unit: str,
    description: str,
    lines: Sequence[Line] = (),
    span: int = 12,
) -> timeseries.Panel:
    """A time series panel; ``lines`` are drawn as dashed threshold lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(8)
        .targets(list(_targets(queries)))
    )
    if lines:
        style = common_builders.GraphThresholdsStyleConfig().mode(
            common.GraphThresholdsStyleMode.DASHED
        )
        panel = panel.thresholds(_steps(lines)).thresholds_style(style)
    return panel


def single(
    title: str,
    *queries: Query,
    unit: str,
    description: str,
    lines: Sequence[Line] = (),
    span: int = 6,
) -> stat.Panel:
    """A stat panel (the latest value), coloured by ``lines``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .thresholds(_steps(lines))
        .targets(list(_targets(queries)))
    )
