"""The "Alert engine" dashboard: is the engine itself evaluating, delivering and storing?"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Panel

from dashboards.panels import (
    Line,
    Query,
    datasource_variable,
    label_variable,
    series,
    signal,
    single,
)
from instrumentation.names import (
    ALERT_STORE_BACKLOG,
    ALERT_STORE_FAILURES,
    ALERTS,
    NOTIFICATIONS,
    RULE_EVALUATION_DURATION,
    RULE_EVALUATIONS,
    SCHEDULER_LEADER,
    SCHEDULER_SKIPPED_RUNS,
)

UID = "dynoscope-alert-engine"


def _panels() -> list[Builder[Panel]]:
    return [
        single(
            "Leader",
            Query(f"max by (instance) ({SCHEDULER_LEADER})", "{{instance}}"),
            unit="none",
            description="1 on the process that evaluates the rules now (one at a time).",
        ),
        single(
            "Store up",
            Query(signal("alert_store_up"), "store"),
            unit="none",
            description="1 while the engine's own store answers; 0 while it runs from memory.",
            lines=[Line(1, "green")],
        ),
        single(
            "Store backlog",
            Query(f"sum({ALERT_STORE_BACKLOG})", "backlog"),
            unit="none",
            description="Changes not yet written to the store (the outbox and alert states "
            "waiting for the write-behind).",
            lines=[Line(100, "orange"), Line(1000, "red")],
        ),
        single(
            "Alerts firing",
            Query(f'sum({ALERTS}{{state="firing"}}) or vector(0)', "firing"),
            unit="none",
            description="Alerts firing now.",
            lines=[Line(1, "red")],
        ),
        series(
            "Evaluations per second by rule",
            Query(f"sum by (rule) (rate({RULE_EVALUATIONS}[5m]))", "{{rule}}"),
            unit="ops",
            description="Rule evaluations per second.",
        ),
        series(
            "Evaluation failures by rule",
            Query(signal("rule_evaluation_failures", by=("rule",)), "{{rule}}"),
            unit="none",
            description="Failed evaluations within 5 m (the query, or the rule itself), as the "
            "engine's self-monitoring rule counts them.",
        ),
        series(
            "Group evaluation duration p95",
            Query(
                "histogram_quantile(0.95, sum by (le, group) "
                f"(rate({RULE_EVALUATION_DURATION}_bucket[5m])))",
                "{{group}}",
            ),
            unit="s",
            description="95th percentile of one evaluation of a rule group.",
        ),
        series(
            "Skipped runs by group",
            Query(
                f"sum by (group) (increase({SCHEDULER_SKIPPED_RUNS}[5m]))",
                "{{group}}",
            ),
            unit="none",
            description="Evaluations skipped because the previous one still ran (0 while none "
            "was skipped).",
        ),
        series(
            "Alerts by state",
            Query(f"sum by (state) ({ALERTS})", "{{state}}"),
            unit="none",
            description="Pending and firing alerts.",
        ),
        series(
            "Notifications by receiver and outcome",
            Query(
                f"sum by (receiver, outcome) (rate({NOTIFICATIONS}[5m]))",
                "{{receiver}} {{outcome}}",
            ),
            unit="ops",
            description="Delivery attempts per second: sent, retried, failed (abandoned).",
        ),
        series(
            "Store backlog and failures",
            Query(f"sum by (instance) ({ALERT_STORE_BACKLOG})", "backlog {{instance}}"),
            Query(
                f"sum by (operation) (rate({ALERT_STORE_FAILURES}[5m]))",
                "failures {{operation}}",
            ),
            unit="none",
            description="Unwritten changes, and failed or timed-out store calls per second "
            "(load, write, prune; 0 while none failed).",
            span=24,
        ),
    ]


def alert_engine() -> builders.Dashboard:
    """The dashboard, ready for ``build()``."""
    board = (
        builders.Dashboard("Alert engine")
        .uid(UID)
        .tags(["dynoscope"])
        .description("Is the alert engine evaluating, delivering and storing?")
        .time("now-1h", "now")
        .refresh("30s")
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", label="Job", selector=SCHEDULER_LEADER))
        .with_variable(
            label_variable(
                "instance",
                label="Instance",
                selector=f'{SCHEDULER_LEADER}{{job=~"$job"}}',
            )
        )
    )
    for panel in _panels():
        board = board.with_panel(panel)
    return board
