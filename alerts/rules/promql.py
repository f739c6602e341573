"""PromQL and local building blocks the signal catalogues share: a ``by`` clause, a summed
rate, a parameter, and a ratio that is absent below a traffic guard (in PromQL and locally).

    >>> from alerts.rules.signal import SignalArgs
    >>> rate_of("x_total", SignalArgs(by=("route",)))
    'sum by (route) (rate(x_total[5m]))'
"""

from __future__ import annotations

import math
from typing import Any

from alerts.engine.query import Labels
from alerts.rules.signal import SignalArgs, number


def by_clause(args: SignalArgs, *extra: str) -> str:
    return f"by ({', '.join((*extra, *args.by))})"


def rate_of(metric: str, args: SignalArgs, *, matcher: str = "") -> str:
    return f"sum {by_clause(args)} (rate({metric}{matcher}[{args.range}]))"


def param(args: SignalArgs, name: str) -> Any:
    return getattr(args.params, name)


def guard(expr: str, total: str, args: SignalArgs) -> str:
    """``expr`` only where ``total`` reaches the traffic guard (``min_requests_per_second``)."""
    minimum = param(args, "min_requests_per_second")
    if minimum <= 0:
        return expr
    return f"({expr}) and on ({', '.join(args.by)}) ({total} >= {number(minimum)})"


def guarded_ratio(*, numerator: str, denominator: str, args: SignalArgs) -> str:
    return guard(f"({numerator} or {denominator} * 0) / {denominator}", denominator, args)


def guarded(
    totals: dict[Labels, float], args: SignalArgs, *, covered: float
) -> dict[Labels, float]:
    """The groups whose ``totals`` (rates over the ``covered`` seconds) reach the traffic
    guard, locally.

    The guard asks for the traffic of a whole window: a process sampled for less than the
    rule's window (a cold start) counts what it saw over the full window, as Prometheus's
    ``rate`` does over a range its samples do not yet fill. Ten seconds of light traffic
    after a start are not a minute of it.
    """
    minimum = param(args, "min_requests_per_second")
    window = args.window.total_seconds()
    share = min(covered, window) / window if window > 0 else 1.0
    return {labels: total for labels, total in totals.items() if total * share >= minimum}


def ratio(
    numerator: dict[Labels, float],
    denominator: dict[Labels, float],
    *,
    args: SignalArgs,
    covered: float,
) -> dict[Labels, float]:
    return {
        labels: numerator.get(labels, 0.0) / total if total > 0 else math.nan
        for labels, total in guarded(denominator, args, covered=covered).items()
    }
