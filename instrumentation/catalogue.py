"""The metric catalogue of instrumented apps: HTTP, database, cache, process, identity.

Names, types, labels and buckets are a contract with dashboards, alert rules and outside
checks (``docs/metrics.md``). Every metric is registered on the registry passed
in, so tests and benchmarks use a fresh one:

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = Catalogue(CollectorRegistry())
    >>> metrics.cache_requests.labels(cache="properties", result="hit").inc()
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from instrumentation import names

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Waits for an admission slot: bounded by ADMISSION_MAX_WAIT (50 ms by default).
ADMISSION_WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
# A stream lasts seconds to hours: how long clients stay, not how fast the server is.
STREAM_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CACHE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "_OTHER"


class Catalogue:
    """The metrics every instrumented app has, registered on one registry.

    The packages that run in such an app register their own beside these, on
    ``catalogue.registry``: the alert engine (``alerts.metrics``), the fault injector
    (``api.faults.metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # HTTP server
        self.http_request_duration = Histogram(
            names.HTTP_SERVER_REQUEST_DURATION,
            "Duration of HTTP server requests, by route template.",
            ["method", "route", "status_code"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.http_active_requests = Gauge(
            names.HTTP_SERVER_ACTIVE_REQUESTS,
            "HTTP server requests in flight.",
            ["method", "route"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.http_rejected_requests = Counter(
            names.HTTP_SERVER_REJECTED_REQUESTS,
            "HTTP requests refused before they were handled, by reason (overload: admission "
            "control shed it).",
            ["reason"],
            registry=registry,
        )
        self.http_admission_wait = Histogram(
            names.HTTP_SERVER_ADMISSION_WAIT,
            "Time requests waited for a slot when admission control found them all taken "
            "(admitted or, past the wait allowed, shed).",
            buckets=ADMISSION_WAIT_BUCKETS,
            registry=registry,
        )
        # Long-lived responses (server-sent events): not requests for latency. They leave
        # the request histogram and the in-flight gauge once their headers are out.
        self.http_stream_start = Histogram(
            names.HTTP_SERVER_STREAM_START,
            "Time from a streaming request to its response headers (its first byte).",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.http_stream_duration = Histogram(
            names.HTTP_SERVER_STREAM_DURATION,
            "How long streaming responses stayed open, from their headers to their end.",
            ["method", "route"],
            buckets=STREAM_BUCKETS,
            registry=registry,
        )
        self.http_open_streams = Gauge(
            names.HTTP_SERVER_OPEN_STREAMS,
            "Streaming responses open now.",
            ["method", "route"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Database client
        self.db_operation_duration = Histogram(
            names.DB_CLIENT_OPERATION_DURATION,
            "Duration of database statements.",
            ["operation", "table"],
            buckets=DB_BUCKETS,
            registry=registry,
        )
        self.db_slow_queries = Counter(
            names.DB_CLIENT_SLOW_QUERIES,
            "Statements slower than the slow-query threshold.",
            ["operation", "table"],
            registry=registry,
        )
        self.db_errors = Counter(
            names.DB_CLIENT_ERRORS,
            "Statements and connection attempts that failed, by error type (connection, "
            "timeout, integrity, other).",
            ["operation", "error_type"],
            registry=registry,
        )
        self.db_connections = Gauge(
            names.DB_CLIENT_CONNECTIONS,
            "Database connections in the pool, by state.",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Cache
        self.cache_requests = Counter(
            names.CACHE_REQUESTS,
            "Cache lookups, by result (hit, miss, error).",
            ["cache", "result"],
            registry=registry,
        )
        self.cache_operation_duration = Histogram(
            names.CACHE_OPERATION_DURATION,
            "Duration of cache operations.",
            ["cache", "operation"],
            buckets=CACHE_BUCKETS,
            registry=registry,
        )
        # Dependencies that failed and were degraded around (events, notifiers, ...)
        self.dependency_errors = Counter(
            names.DEPENDENCY_ERRORS,
            "Failed calls to a dependency that the service degraded around.",
            ["dependency"],
            registry=registry,
        )
        # Identity
        self.instance_info = Gauge(
            names.INSTANCE_INFO,
            "Always 1; labels identify the instance and its version.",
            ["instance_id", "version"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        # Capacity: what the instance's CPU time is measured against
        self.instance_cores = Gauge(
            names.INSTANCE_CORES,
            "CPU cores the instance's workers can use: its workers, capped by the CPUs it may "
            "run on (affinity and CPU quota).",
            ["workers"],
            multiprocess_mode="livemax",
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
            names.PROCESS_RESIDENT_MEMORY,
            "Resident memory size in bytes, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.virtual_memory = Gauge(
            names.PROCESS_VIRTUAL_MEMORY,
            "Virtual memory size in bytes, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.start_time = Gauge(
            names.PROCESS_START_TIME,
            "Start time of the most recently started worker, in seconds since the epoch.",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.cpu_seconds = Counter(
            names.PROCESS_CPU,
            "User and system CPU time spent, in seconds, summed over the instance's workers.",
            registry=registry,
        )
        self.open_fds = Gauge(
            names.PROCESS_OPEN_FDS,
            "Open file descriptors, summed over the instance's live worker processes.",
            multiprocess_mode="livesum",
            registry=registry,
        )
