"""The metric catalogue: every metric dynoscope emits, declared once.

Names, types, labels and buckets are a contract with dashboards, alert rules and outside
checks (``docs/metrics.md``). Every metric is registered on the registry passed
in, so tests and benchmarks use a fresh one:

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = Catalogue(CollectorRegistry())
    >>> metrics.cache_requests.labels(cache="properties", result="hit").inc()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CACHE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
RULE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "_OTHER"


class Catalogue:
    """All metrics of the catalogue, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # HTTP server
        self.http_request_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by route template.",
            ["method", "route", "status_code"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.http_active_requests = Gauge(
            "http_server_active_requests",
            "HTTP server requests in flight.",
            ["method", "route"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.http_rejected_requests = Counter(
            "http_server_rejected_requests",
            "HTTP requests refused before they were handled, by reason (overload: admission "
            "control shed it).",
            ["reason"],
            registry=registry,
        )
        # Database client
        self.db_operation_duration = Histogram(
            "db_client_operation_duration_seconds",
            "Duration of database statements.",
            ["operation", "table"],
            buckets=DB_BUCKETS,
            registry=registry,
        )
        self.db_slow_queries = Counter(
            "db_client_slow_queries",
            "Statements slower than the slow-query threshold.",
            ["operation", "table"],
            registry=registry,
        )
        self.db_errors = Counter(
            "db_client_errors",
            "Statements and connection attempts that failed, by error type (connection, "
            "timeout, integrity, other).",
            ["operation", "error_type"],
            registry=registry,
        )
        self.db_connections = Gauge(
            "db_client_connections",
            "Database connections in the pool, by state.",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Cache
        self.cache_requests = Counter(
            "cache_requests",
            "Cache lookups, by result (hit, miss, error).",
            ["cache", "result"],
            registry=registry,
        )
        self.cache_operation_duration = Histogram(
            "cache_operation_duration_seconds",
            "Duration of cache operations.",
            ["cache", "operation"],
            buckets=CACHE_BUCKETS,
            registry=registry,
        )
        # Dependencies that failed and were degraded around (events, notifiers, ...)
        self.dependency_errors = Counter(
            "dynoscope_dependency_errors",
            "Failed calls to a dependency that the service degraded around.",
            ["dependency"],
            registry=registry,
        )
        # Fault injection (docs/faults.md): dashboards show when trouble was made on purpose.
        self.fault_active = Gauge(
            "dynoscope_fault_active",
            "1 while the named fault is switched on in this process, else 0.",
            ["fault"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        # Identity
        self.instance_info = Gauge(
            "dynoscope_instance_info",
            "Always 1; labels identify the instance and its version.",
            ["instance_id", "version"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        # Alert engine
        self.rule_evaluations = Counter(
            "dynoscope_rule_evaluations",
            "Rule evaluations.",
            ["rule"],
            registry=registry,
        )
        self.rule_evaluation_failures = Counter(
            "dynoscope_rule_evaluation_failures",
            "Rule evaluations whose query failed.",
            ["rule"],
            registry=registry,
        )
        self.rule_evaluation_duration = Histogram(
            "dynoscope_rule_evaluation_duration_seconds",
            "Duration of one evaluation of a rule group.",
            ["group"],
            buckets=RULE_BUCKETS,
            registry=registry,
        )
        self.alerts = Gauge(
            "dynoscope_alerts",
            "Alerts by name and state (pending, firing).",
            ["alertname", "state"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.notifications = Counter(
            "dynoscope_notifications",
            "Notification deliveries, by receiver and outcome (sent, failed, retried).",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.scheduler_leader = Gauge(
            "dynoscope_scheduler_leader",
            "1 while this process is the scheduler leader.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.alert_store_up = Gauge(
            "dynoscope_alert_store_up",
            "1 while the alert engine's own store answers, 0 while it runs from memory alone.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.alert_store_failures = Counter(
            "dynoscope_alert_store_failures",
            "Failed or timed-out calls to the alert engine's store, by operation.",
            ["operation"],
            registry=registry,
        )
        self.alert_store_backlog = Gauge(
            "dynoscope_alert_store_backlog",
            "Changes (alert states, transitions, deliveries) not yet written to the store.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.scheduler_skipped_runs = Counter(
            "dynoscope_scheduler_skipped_runs",
            "Group evaluations skipped because the previous one was still running.",
            ["group"],
            registry=registry,
        )


class ProcessMetrics:
    """Per-process resource metrics for multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).

    The client library's ``ProcessCollector`` reads ``/proc`` of the process that serves the
    scrape, so with several workers it would report one worker at random. These metrics carry
    the same names, are written by every worker into its own file, and aggregate to one series
    per instance: memory is summed over live workers, CPU over all workers that ever ran, and
    the start time is the most recent worker start (so a restarted worker reads as a restart).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.resident_memory = Gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.virtual_memory = Gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.start_time = Gauge(
            "process_start_time_seconds",
            "Start time of the most recently started worker, in seconds since the epoch.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.cpu_seconds = Counter(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds, summed over the instance's workers.",
            registry=registry,
        )
        self.open_fds = Gauge(
            "process_open_fds",
            "Open file descriptors, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
