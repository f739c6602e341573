"""The "Scaling health" dashboard: is the API keeping up, and where would more instances help?

Thresholds are the ones the rules and the capacity plan use: 200 ms p95 target and 500 ms
alert, 70 % cache hit target and 60 % alert, ~100 concurrent users per instance, 70 % CPU
utilisation sized for and 80 % forecast.
"""

from __future__ import annotations

from datetime import timedelta

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Panel

from alerts.rules.capacity import ForecastParams
from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named
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
    ALERTS,
    AUTH_ATTEMPTS,
    DB_CLIENT_ERRORS,
    DB_CLIENT_OPERATION_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION,
    INSTANCE_CORES,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
)

UID = "dynoscope-scaling-health"
DURATION = HTTP_SERVER_REQUEST_DURATION
PLANNED_USERS_PER_INSTANCE = 100
TREND_WINDOW = timedelta(hours=6)
"""The forecast's trend window, as the shipped CapacityExhaustionForecast rule has it."""
"""The capacity plan's figure; concurrency above it on every instance means scale out."""


def _latency() -> list[Query]:
    return [
        Query(signal(f"http_latency_{p}_seconds", by=("route",)), f"{p} {{{{route}}}}", True)
        for p in ("p50", "p95", "p99")
    ]


def _traffic() -> list[Builder[Panel]]:
    return [
        single(
            "Instances up",
            Query(f"sum({signal('instance_up', by=('job', 'instance'))})", "up"),
            unit="none",
            description="API and engine instances that answered their last scrape.",
        ),
        single(
            "Active alerts",
            Query(f'sum({ALERTS}{{state="firing"}}) or vector(0)', "firing"),
            unit="none",
            description=f"Alerts firing in the alert engine ({ALERTS}).",
            lines=[Line(1, "red")],
        ),
        single(
            "Requests shed",
            Query(f"sum({signal('http_rejected_requests_per_second')}) or vector(0)", "shed"),
            unit="reqps",
            description="Requests refused by admission control (past MAX_IN_FLIGHT).",
            lines=[Line(0.001, "red")],
        ),
        single(
            "Error ratio",
            Query(signal("http_error_ratio"), "5xx"),
            unit="percentunit",
            description="Share of responses with a 5xx status, all routes.",
            lines=[Line(0.01, "orange"), Line(0.05, "red")],
        ),
        series(
            "Request rate by route",
            Query(signal("http_requests_per_second", by=("route",)), "{{route}}"),
            unit="reqps",
            description="HTTP requests per second, per route template.",
        ),
        series(
            "Error ratio by route",
            Query(signal("http_error_ratio", by=("route",)), "{{route}}"),
            unit="percentunit",
            description="Share of 5xx responses per route.",
        ),
        series(
            "Latency p50 / p95 / p99 by route",
            *_latency(),
            unit="s",
            description="Request duration quantiles with exemplars (open one to see its "
            "trace). Dashed: the 200 ms target and the 500 ms alert.",
            lines=[Line(0.2, "orange"), Line(0.5, "red")],
            span=24,
        ),
    ]


def _instances() -> list[Builder[Panel]]:
    return [
        series(
            "Requests per instance",
            Query(signal("http_requests_per_second", by=("instance",)), "{{instance}}"),
            unit="reqps",
            description="Load-balancer skew: replicas behind one balancer should match.",
        ),
        series(
            "In-flight requests",
            Query(f"sum by (instance) ({HTTP_SERVER_ACTIVE_REQUESTS})", "{{instance}}"),
            unit="none",
            description="Requests being handled right now, per instance.",
        ),
        series(
            "Concurrency per instance (Little's law)",
            # L = λ·W: request rate times mean latency is the rate of the duration sum.
            Query(f"sum by (instance) (rate({DURATION}_sum[5m]))", "{{instance}}"),
            unit="none",
            description="Request rate times mean latency: requests in the system on average. "
            f"Dashed: the planning figure of ~{PLANNED_USERS_PER_INSTANCE} concurrent users "
            "per instance.",
            lines=[Line(PLANNED_USERS_PER_INSTANCE, "red")],
        ),
        series(
            "Requests shed by admission control",
            Query(
                signal("http_rejected_requests_per_second", by=("instance", "reason")),
                "{{instance}} {{reason}}",
            ),
            unit="reqps",
            description="503s answered at once past MAX_IN_FLIGHT; empty while none.",
        ),
        series(
            "CPU per instance",
            Query(f"sum by (instance) (rate({PROCESS_CPU}[5m]))", "{{instance}}"),
            unit="percentunit",
            description="CPU seconds per second (1 = one core), all workers of an instance.",
        ),
        series(
            "Resident memory per instance",
            Query(f"sum by (instance) ({PROCESS_RESIDENT_MEMORY})", "{{instance}}"),
            unit="bytes",
            description="Resident set size, summed over an instance's live workers.",
        ),
        series(
            "Memory growth per instance",
            Query(signal("memory_growth_bytes_per_hour", by=("instance",)), "{{instance}}"),
            unit="bytes",
            description="Least-squares slope of resident memory per hour (as the leak rule "
            "computes it), instances younger than the 5 m window left out.",
            span=24,
        ),
    ]


def _capacity() -> list[Builder[Panel]]:
    forecast = signal_named("capacity_hours_to_saturation")
    hours = forecast.promql(SignalArgs(window=TREND_WINDOW, params=ForecastParams()))
    running = f"count(sum by (instance, job) ({INSTANCE_CORES} > 0))"
    return [
        series(
            "CPU utilisation per instance",
            Query(signal("capacity_utilization", by=("instance",)), "{{instance}}"),
            Query(signal("capacity_utilization"), "fleet"),
            unit="percentunit",
            description="CPU seconds per second over the cores each instance's workers can use "
            "(dynoscope_instance_cores); the fleet's is busy cores over all cores. Dashed: the "
            "70 % the instances needed are sized for and the 80 % the forecast warns of.",
            lines=[Line(0.7, "orange"), Line(0.8, "red")],
        ),
        series(
            "Instances needed vs running",
            Query(signal("instances_needed"), "needed (70 % of cores)"),
            Query(running, "running"),
            unit="none",
            description="Instances the CPU demand needs to keep each under 70 % of its cores "
            "(what KEDA or the HPA scales on, as dynoscope:instances_needed), against the "
            "instances reporting their cores.",
        ),
        series(
            "Saturation rate vs request rate per instance",
            Query(
                signal("capacity_saturation_requests_per_second", by=("instance",)),
                "saturation {{instance}}",
            ),
            Query(signal("http_requests_per_second", by=("instance",)), "requests {{instance}}"),
            unit="reqps",
            description="Requests per second at which an instance's cores would be fully busy "
            "(cores over CPU seconds per request), against what it serves; the p95 reaches "
            "200 ms a few per cent below saturation (docs/capacity.md).",
        ),
        single(
            "Hours to 80 % utilisation",
            Query(hours, "hours"),
            unit="h",
            description="When the fleet's utilisation, on its least-squares trend over the last "
            "6 h, reaches 80 % (CapacityExhaustionForecast warns under 24 h, "
            "CapacityExhaustionImminent pages under 2 h); empty while it does not rise.",
            span=12,
        ),
    ]


def _access() -> list[Builder[Panel]]:
    return [
        series(
            "Authentication attempts by outcome",
            Query(
                f"sum by (endpoint, outcome) (rate({AUTH_ATTEMPTS}[5m]))",
                "{{endpoint}} {{outcome}}",
            ),
            unit="reqps",
            description="Sign-ins, registrations and refreshes per second by outcome: success, "
            "bad_credentials, rate_limited (429) and invalid. Failures and refusals together "
            "above one a second for 5 m is AuthenticationAbuse.",
            span=24,
        ),
    ]


def _database() -> list[Builder[Panel]]:
    return [
        series(
            "Database queries per second by table",
            Query(signal("db_queries_per_second", by=("table",)), "{{table}}"),
            unit="ops",
            description="Statements per second per table.",
        ),
        series(
            "Database queries per request",
            Query(signal("db_queries_per_request", by=("instance",)), "{{instance}}"),
            unit="none",
            description="Statements per HTTP request: a rise means an N+1 or a cold cache.",
        ),
        series(
            "Query duration p95 by table",
            Query(
                "histogram_quantile(0.95, sum by (le, table) "
                f"(rate({DB_CLIENT_OPERATION_DURATION}_bucket[5m])))",
                "{{table}}",
            ),
            unit="s",
            description="95th percentile of one statement's round trip, per table.",
        ),
        series(
            "Slow queries by table",
            Query(signal("db_slow_queries_per_minute", by=("table",)), "{{table}}"),
            unit="none",
            description="Statements slower than DB_SLOW_QUERY_SECONDS, per minute.",
        ),
        series(
            "Database errors by type",
            Query(f"sum by (error_type) (rate({DB_CLIENT_ERRORS}[5m]))", "{{error_type}}"),
            unit="ops",
            description="Failed statements and connection attempts per second; empty while "
            "none failed.",
        ),
        series(
            "Cache hit ratio per cache",
            Query(signal("cache_hit_ratio", by=("cache",)), "{{cache}}"),
            unit="percentunit",
            description="Share of lookups that hit. Dashed: the 70 % target and the 60 % alert.",
            lines=[Line(0.6, "red"), Line(0.7, "orange")],
        ),
    ]


def scaling_health() -> builders.Dashboard:
    """The dashboard, ready for ``build()``."""
    board = (
        builders.Dashboard("Scaling health")
        .uid(UID)
        .tags(["dynoscope"])
        .description("Is the API keeping up, and where would more instances help?")
        .time("now-1h", "now")
        .refresh("30s")
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", label="Job", selector="up"))
        .with_variable(label_variable("instance", label="Instance", selector='up{job=~"$job"}'))
        .with_variable(
            label_variable(
                "route",
                label="Route",
                selector=f'{DURATION}_count{{job=~"$job", instance=~"$instance"}}',
            )
        )
    )
    for title, panels in (
        ("Traffic and latency", _traffic()),
        ("Instances", _instances()),
        ("Capacity", _capacity()),
        ("Database and cache", _database()),
        ("Authentication", _access()),
    ):
        board = board.with_row(builders.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board
