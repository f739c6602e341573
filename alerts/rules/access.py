"""Signals about who gets in: requests admission control sheds, and sign-ins that fail or
are throttled (password guessing, credential stuffing).

    >>> from alerts.rules.signal import SignalArgs, TrafficGuard
    >>> guard = TrafficGuard(min_requests_per_second=0.1)
    >>> AUTH_FAILURES.promql(SignalArgs(params=guard)).endswith(
    ...     "and on () (sum by () (rate(auth_attempts_total[5m])) >= 0.1)")
    True
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.engine.query import Labels
from alerts.engine.window import Window
from alerts.rules.promql import guard, guarded, rate_of
from alerts.rules.signal import Signal, SignalArgs, TrafficGuard
from instrumentation.names import AUTH_ATTEMPTS, HTTP_SERVER_REJECTED_REQUESTS

TARGET = ("instance", "job")
FAILED = ("bad_credentials", "rate_limited")


def _overload(labels: Mapping[str, str]) -> bool:
    return labels.get("reason") == "overload"


def _failed(labels: Mapping[str, str]) -> bool:
    return labels.get("outcome") in FAILED


def _shed_promql(args: SignalArgs) -> str:
    return rate_of(HTTP_SERVER_REJECTED_REQUESTS, args, matcher='{reason="overload"}')


def _shed(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return window.rates(HTTP_SERVER_REJECTED_REQUESTS, by=args.by, where=_overload)


def _auth_failures_promql(args: SignalArgs) -> str:
    failed = rate_of(AUTH_ATTEMPTS, args, matcher=f'{{outcome=~"{"|".join(FAILED)}"}}')
    total = rate_of(AUTH_ATTEMPTS, args)
    return guard(f"{failed} or {total} * 0", total, args)


def _auth_failures(window: Window, args: SignalArgs) -> dict[Labels, float]:
    failed = window.rates(AUTH_ATTEMPTS, by=args.by, where=_failed)
    totals = guarded(window.rates(AUTH_ATTEMPTS, by=args.by), args, covered=window.extent)
    return {labels: failed.get(labels, 0.0) for labels in totals}


OVERLOAD_SHED = Signal(
    name="http_overload_shed_per_second",
    help="HTTP requests admission control refused at capacity (503), per second; not those "
    "refused by a rate limit.",
    labels=frozenset(TARGET),
    promql=_shed_promql,
    compute=_shed,
)

AUTH_FAILURES = Signal(
    name="auth_failures_per_second",
    help="Sign-ins, registrations and refreshes that failed (bad credentials) or were "
    "throttled, per second; absent below min_requests_per_second attempts of any outcome.",
    labels=frozenset({"endpoint", *TARGET}),
    promql=_auth_failures_promql,
    compute=_auth_failures,
    params=TrafficGuard,
)

ACCESS_SIGNALS = (OVERLOAD_SHED, AUTH_FAILURES)
