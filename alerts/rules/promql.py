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


def guarded(totals: dict[Labels, float], args: SignalArgs) -> dict[Labels, float]:
    """The groups whose ``totals`` reach the traffic guard, locally."""
    minimum = param(args, "min_requests_per_second")
    return {labels: total for labels, total in totals.items() if total >= minimum}


def ratio(
    numerator: dict[Labels, float], denominator: dict[Labels, float], *, args: SignalArgs
) -> dict[Labels, float]:
    return {
        labels: numerator.get(labels, 0.0) / total if total > 0 else math.nan
        for labels, total in guarded(denominator, args).items()
    }
