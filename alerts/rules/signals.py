"""The catalogue of signals: each defined once, with its PromQL and its local computation.

A rule names a signal instead of writing PromQL, so the same rule runs against Prometheus
(the ``promql`` text) or inside the process (``compute`` over sampled registries), and the
dashboards reuse the PromQL. Label names follow the metric catalogue (``docs/metrics.md``).

    >>> print(signal_named("db_slow_queries_per_minute").promql(SignalArgs(by=("table",))))
    sum by (table) (rate(db_client_slow_queries_total[5m])) * 60
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache

from alerts.engine.query import Labels
from alerts.engine.window import Window, bucket_quantiles, project
from alerts.rules.access import ACCESS_SIGNALS
from alerts.rules.capacity import CAPACITY_SIGNALS
from alerts.rules.promql import by_clause, guarded_ratio, param, rate_of, ratio
from alerts.rules.signal import (
    RestartGuard,
    Signal,
    SignalArgs,
    TrafficGuard,
    number,
    quantile_of,
)
from instrumentation.names import (
    ALERT_STORE_UP,
    CACHE_REQUESTS,
    DB_CLIENT_ERRORS,
    DB_CLIENT_OPERATION_DURATION,
    DB_CLIENT_SLOW_QUERIES,
    HTTP_SERVER_REJECTED_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_START_TIME,
    RULE_EVALUATION_FAILURES,
)

UNAVAILABLE = ("connection", "timeout")
TARGET = ("instance", "job")


# --- HTTP ---------------------------------------------------------------------------------


def _latency(quantile: float, *, name: str | None = None) -> Signal:
    def promql(args: SignalArgs) -> str:
        inner = f"rate({HTTP_SERVER_REQUEST_DURATION}_bucket[{args.range}])"
        return f"histogram_quantile({quantile:g}, sum {by_clause(args, 'le')} ({inner}))"

    def compute(window: Window, args: SignalArgs) -> dict[Labels, float]:
        increases = window.increases(f"{HTTP_SERVER_REQUEST_DURATION}_bucket", by=("le", *args.by))
        return bucket_quantiles(increases, quantile=quantile)

    percent = f"{quantile * 100:g}".replace(".", "")
    return Signal(
        name=name or f"http_latency_p{percent}_seconds",
        help=f"{quantile:g} quantile of HTTP request duration (seconds).",
        labels=frozenset({"method", "route", "status_code", *TARGET}),
        promql=promql,
        compute=compute,
    )


def _error_ratio_promql(args: SignalArgs) -> str:
    return guarded_ratio(
        numerator=rate_of(
            f"{HTTP_SERVER_REQUEST_DURATION}_count", args, matcher='{status_code=~"5.."}'
        ),
        denominator=rate_of(f"{HTTP_SERVER_REQUEST_DURATION}_count", args),
        args=args,
    )


def _server_error(labels: Mapping[str, str]) -> bool:
    return labels.get("status_code", "").startswith("5")


def _hit(labels: Mapping[str, str]) -> bool:
    return labels.get("result") == "hit"


def _error_ratio(window: Window, args: SignalArgs) -> dict[Labels, float]:
    name = f"{HTTP_SERVER_REQUEST_DURATION}_count"
    errors = window.rates(name, by=args.by, where=_server_error)
    return ratio(errors, window.rates(name, by=args.by), args=args, covered=window.extent)


def _requests(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(f"{HTTP_SERVER_REQUEST_DURATION}_count", by=args.by)


def _busy(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(f"{HTTP_SERVER_REQUEST_DURATION}_sum", by=args.by)


def _rejected(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(HTTP_SERVER_REJECTED_REQUESTS, by=args.by)


# --- database ------------------------------------------------------------------------------


def _slow_queries(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return {k: v * 60 for k, v in window.rates(DB_CLIENT_SLOW_QUERIES, by=args.by).items()}


def _db_queries(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(f"{DB_CLIENT_OPERATION_DURATION}_count", by=args.by)


def _db_per_request_promql(args: SignalArgs) -> str:
    statements = rate_of(f"{DB_CLIENT_OPERATION_DURATION}_count", args)
    return f"{statements} / {rate_of(f'{HTTP_SERVER_REQUEST_DURATION}_count', args)}"


def _db_per_request(window: Window, args: SignalArgs) -> dict[Labels, float]:
    queries = window.rates(f"{DB_CLIENT_OPERATION_DURATION}_count", by=args.by)
    requests = window.rates(f"{HTTP_SERVER_REQUEST_DURATION}_count", by=args.by)
    return {
        labels: queries[labels] / total if total > 0 else math.nan
        for labels, total in requests.items()
        if labels in queries
    }


def _unavailable(labels: Mapping[str, str]) -> bool:
    return labels.get("error_type") in UNAVAILABLE


def _db_unavailable(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(DB_CLIENT_ERRORS, by=args.by, where=_unavailable)


# --- cache ---------------------------------------------------------------------------------


def _hit_ratio_promql(args: SignalArgs) -> str:
    return guarded_ratio(
        numerator=rate_of(CACHE_REQUESTS, args, matcher='{result="hit"}'),
        denominator=rate_of(CACHE_REQUESTS, args),
        args=args,
    )


def _hit_ratio(window: Window, args: SignalArgs) -> dict[Labels, float]:
    hits = window.rates(CACHE_REQUESTS, by=args.by, where=_hit)
    return ratio(hits, window.rates(CACHE_REQUESTS, by=args.by), args=args, covered=window.extent)


def _cache_error(labels: Mapping[str, str]) -> bool:
    return labels.get("result") == "error"


def _cache_error_ratio_promql(args: SignalArgs) -> str:
    return guarded_ratio(
        numerator=rate_of(CACHE_REQUESTS, args, matcher='{result="error"}'),
        denominator=rate_of(CACHE_REQUESTS, args),
        args=args,
    )


def _cache_error_ratio(window: Window, args: SignalArgs) -> dict[Labels, float]:
    errors = window.rates(CACHE_REQUESTS, by=args.by, where=_cache_error)
    return ratio(errors, window.rates(CACHE_REQUESTS, by=args.by), args=args, covered=window.extent)


# --- process -------------------------------------------------------------------------------


def _min_uptime(args: SignalArgs) -> float:
    configured: float | None = param(args, "min_uptime_seconds")
    return args.window.total_seconds() if configured is None else configured


def _memory_growth_promql(args: SignalArgs) -> str:
    growth = f"deriv({PROCESS_RESIDENT_MEMORY}[{args.range}]) * 3600"
    fresh = f"time() - {PROCESS_START_TIME} > {number(_min_uptime(args))}"
    return f"max {by_clause(args)} ({growth} and on (instance, job) ({fresh}))"


def _memory_growth(window: Window, args: SignalArgs) -> dict[Labels, float]:
    started = window.latest(PROCESS_START_TIME)
    result: dict[Labels, float] = {}
    for labels, slope in window.slopes(PROCESS_RESIDENT_MEMORY).items():
        start = started.get(labels)
        if start is None or window.now - start <= _min_uptime(args):
            continue
        key = project(labels, args.by)
        result[key] = max(result.get(key, -math.inf), slope * 3600)
    return result


def _resident_memory(window: Window, args: SignalArgs) -> dict[Labels, float]:
    result: dict[Labels, float] = {}
    for labels, value in window.latest(PROCESS_RESIDENT_MEMORY).items():
        key = project(labels, args.by)
        result[key] = max(result.get(key, -math.inf), value)
    return result


def _instance_up(window: Window, args: SignalArgs) -> dict[Labels, float]:
    # The process that samples itself is, by definition, up.
    latest = window.snapshots[-1].values.values() if window.snapshots else ()
    targets = {project(labels, TARGET) for series in latest for labels in series}
    return {project(target, args.by): 1.0 for target in targets} or {(): 1.0}


# --- the engine itself ------------------------------------------------------------------------


def _failures(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.increases(RULE_EVALUATION_FAILURES, by=args.by)


def _store_up(window: Window, args: SignalArgs) -> dict[Labels, float]:
    result: dict[Labels, float] = {}
    for labels, value in window.latest(ALERT_STORE_UP).items():
        key = project(labels, args.by)
        result[key] = min(result.get(key, math.inf), value)
    return result


def _heartbeat(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return {(): 1.0}


SIGNALS: Mapping[str, Signal] = {
    signal.name: signal
    for signal in (
        *(_latency(q) for q in (0.5, 0.9, 0.95, 0.99)),
        *ACCESS_SIGNALS,
        *CAPACITY_SIGNALS,
        Signal(
            name="http_error_ratio",
            help="Share of HTTP responses with a 5xx status.",
            labels=frozenset({"method", "route", *TARGET}),
            promql=_error_ratio_promql,
            compute=_error_ratio,
            params=TrafficGuard,
        ),
        Signal(
            name="http_requests_per_second",
            help="HTTP requests per second.",
            labels=frozenset({"method", "route", "status_code", *TARGET}),
            promql=lambda a: rate_of(f"{HTTP_SERVER_REQUEST_DURATION}_count", a),
            compute=_requests,
        ),
        Signal(
            name="http_busy_seconds_per_second",
            help="Seconds of request handling per second (the rate of the duration sum): by "
            "instance, the requests in flight on average (Little's law).",
            labels=frozenset({"method", "route", "status_code", *TARGET}),
            promql=lambda a: rate_of(f"{HTTP_SERVER_REQUEST_DURATION}_sum", a),
            compute=_busy,
        ),
        Signal(
            name="http_rejected_requests_per_second",
            help="HTTP requests refused before handling (admission control), per second.",
            labels=frozenset({"reason", *TARGET}),
            promql=lambda a: rate_of(HTTP_SERVER_REJECTED_REQUESTS, a),
            compute=_rejected,
        ),
        Signal(
            name="db_slow_queries_per_minute",
            help="Database statements slower than the slow-query threshold, per minute.",
            labels=frozenset({"operation", "table", *TARGET}),
            promql=lambda a: f"{rate_of(DB_CLIENT_SLOW_QUERIES, a)} * 60",
            compute=_slow_queries,
        ),
        Signal(
            name="db_unavailable_errors_per_second",
            help="Failed connection attempts and statements that lost their connection or "
            "timed out, per second.",
            labels=frozenset({"operation", "error_type", *TARGET}),
            promql=lambda a: rate_of(
                DB_CLIENT_ERRORS, a, matcher=f'{{error_type=~"{"|".join(UNAVAILABLE)}"}}'
            ),
            compute=_db_unavailable,
        ),
        Signal(
            name="db_queries_per_second",
            help="Database statements per second.",
            labels=frozenset({"operation", "table", *TARGET}),
            promql=lambda a: rate_of(f"{DB_CLIENT_OPERATION_DURATION}_count", a),
            compute=_db_queries,
        ),
        Signal(
            name="db_queries_per_request",
            help="Database statements per HTTP request.",
            labels=frozenset(TARGET),
            promql=_db_per_request_promql,
            compute=_db_per_request,
        ),
        Signal(
            name="cache_hit_ratio",
            help="Share of cache lookups that hit.",
            labels=frozenset({"cache", *TARGET}),
            promql=_hit_ratio_promql,
            compute=_hit_ratio,
            params=TrafficGuard,
        ),
        Signal(
            name="cache_error_ratio",
            help="Share of cache lookups that failed (the cache answered nothing, reads went "
            "to the database).",
            labels=frozenset({"cache", *TARGET}),
            promql=_cache_error_ratio_promql,
            compute=_cache_error_ratio,
            params=TrafficGuard,
        ),
        Signal(
            name="memory_growth_bytes_per_hour",
            help="Least-squares slope of resident memory, per instance, ignoring fresh starts.",
            labels=frozenset(TARGET),
            promql=_memory_growth_promql,
            compute=_memory_growth,
            params=RestartGuard,
        ),
        Signal(
            name="memory_resident_bytes",
            help="Resident memory of the process (the largest series per group), bytes.",
            labels=frozenset(TARGET),
            promql=lambda a: f"max {by_clause(a)} ({PROCESS_RESIDENT_MEMORY})",
            compute=_resident_memory,
        ),
        Signal(
            name="instance_up",
            help="1 when the instance answered its last scrape.",
            labels=frozenset(TARGET),
            promql=lambda a: f"max {by_clause(a)} (up)",
            compute=_instance_up,
        ),
        Signal(
            name="rule_evaluation_failures",
            help="Failed rule evaluations of the alert engine within the window.",
            labels=frozenset({"rule", *TARGET}),
            promql=lambda a: (
                f"sum {by_clause(a)} (increase({RULE_EVALUATION_FAILURES}[{a.range}]))"
            ),
            compute=_failures,
            self_monitoring=True,
        ),
        Signal(
            name="alert_store_up",
            help="1 while the alert engine's own store answers, 0 while it runs from memory.",
            labels=frozenset(TARGET),
            promql=lambda a: f"min {by_clause(a)} ({ALERT_STORE_UP})",
            compute=_store_up,
            self_monitoring=True,
        ),
        Signal(
            name="heartbeat",
            help="Always 1: a rule on it fires for ever (dead man's switch).",
            labels=frozenset(),
            promql=lambda a: "vector(1)",
            compute=_heartbeat,
        ),
    )
}

_QUANTILE = re.compile(r"http_latency_p(\d+)_seconds$")


@lru_cache(maxsize=64)
def signal_named(name: str) -> Signal:
    """The signal called ``name``; ``http_latency_pNN_seconds`` accepts any quantile
    (``KeyError`` for an unknown name, ``ValueError`` for a quantile that is not one).

    >>> signal_named("http_latency_p999_seconds").help
    '0.999 quantile of HTTP request duration (seconds).'
    """
    if name in SIGNALS:
        return SIGNALS[name]
    match = _QUANTILE.match(name)
    if match is not None:
        return _latency(quantile_of(match.group(1)), name=name)
    raise KeyError(name)
