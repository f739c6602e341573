"""Metric names, defined once: the catalogue declares them, rules' signals and dashboards'
PromQL select them (``docs/metrics.md`` is the contract).

Each is the name a query uses: a counter's ends in ``_total`` (prometheus_client declares
the family without it), a histogram's is the family name its ``_bucket``, ``_sum`` and
``_count`` series extend.
"""

from __future__ import annotations

# HTTP server
HTTP_SERVER_REQUEST_DURATION = "http_server_request_duration_seconds"
HTTP_SERVER_ACTIVE_REQUESTS = "http_server_active_requests"
HTTP_SERVER_REJECTED_REQUESTS = "http_server_rejected_requests_total"
HTTP_SERVER_ADMISSION_WAIT = "http_server_admission_wait_seconds"
HTTP_SERVER_STREAM_START = "http_server_stream_start_seconds"
HTTP_SERVER_STREAM_DURATION = "http_server_stream_duration_seconds"
HTTP_SERVER_OPEN_STREAMS = "http_server_open_streams"
# Database client
DB_CLIENT_OPERATION_DURATION = "db_client_operation_duration_seconds"
DB_CLIENT_SLOW_QUERIES = "db_client_slow_queries_total"
DB_CLIENT_ERRORS = "db_client_errors_total"
DB_CLIENT_CONNECTIONS = "db_client_connections"
# Cache
CACHE_REQUESTS = "cache_requests_total"
CACHE_OPERATION_DURATION = "cache_operation_duration_seconds"
# Process and instance
PROCESS_RESIDENT_MEMORY = "process_resident_memory_bytes"
PROCESS_VIRTUAL_MEMORY = "process_virtual_memory_bytes"
PROCESS_START_TIME = "process_start_time_seconds"
PROCESS_CPU = "process_cpu_seconds_total"
PROCESS_OPEN_FDS = "process_open_fds"
INSTANCE_INFO = "dynoscope_instance_info"
INSTANCE_CORES = "dynoscope_instance_cores"
DEPENDENCY_ERRORS = "dynoscope_dependency_errors_total"
FAULT_ACTIVE = "dynoscope_fault_active"
AUTH_ATTEMPTS = "auth_attempts_total"
# Alert engine
RULE_EVALUATIONS = "dynoscope_rule_evaluations_total"
RULE_EVALUATION_FAILURES = "dynoscope_rule_evaluation_failures_total"
RULE_EVALUATION_DURATION = "dynoscope_rule_evaluation_duration_seconds"
ALERTS = "dynoscope_alerts"
NOTIFICATIONS = "dynoscope_notifications_total"
SCHEDULER_LEADER = "dynoscope_scheduler_leader"
SCHEDULER_SKIPPED_RUNS = "dynoscope_scheduler_skipped_runs_total"
ALERT_STORE_UP = "dynoscope_alert_store_up"
ALERT_STORE_FAILURES = "dynoscope_alert_store_failures_total"
ALERT_STORE_BACKLOG = "dynoscope_alert_store_backlog"
