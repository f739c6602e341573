"""What every notifier says about one alert, as text: the condition, where, traces, queries.

>>> condition_of({"value": 0.81234, "op": ">", "threshold": 0.5})
'0.812 > 0.5'
"""

from __future__ import annotations

from typing import Any


def number_text(value: Any) -> str:
    """A value as on-call reads it: ``0.812``, ``52428800``, ``no data`` for NaN/None.

    >>> number_text(0.81234), number_text(52428800.0), number_text(None)
    ('0.812', '52428800', 'no data')
    """
    if not isinstance(value, int | float) or value != value:
        return "no data"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def condition_of(payload: dict[str, Any]) -> str:
    """Value against the rule's threshold, e.g. ``0.812 > 0.5``; just the value for raw PromQL.

    >>> condition_of({"value": 0.81234, "op": ">", "threshold": 0.5})
    '0.812 > 0.5'
    """
    value = number_text(payload.get("value"))
    if payload.get("op") is None or payload.get("threshold") is None:
        return value
    return f"{value} {payload['op']} {number_text(payload['threshold'])}"


def where_of(labels: dict[str, str]) -> str:
    """What is affected: the route and/or instance (or the cache, the job), "" if none."""
    parts = [f"{k} {labels[k]}" for k in ("route", "instance", "cache", "rule") if labels.get(k)]
    return ", ".join(parts)


def query_lines(payload: dict[str, Any]) -> list[str]:
    """One line per slowest statement: seconds, operation, table, fingerprint, trace."""
    queries = (payload.get("context") or {}).get("queries") or []
    return [
        f"{q['seconds']:.3f}s {q['operation']} {q['table']} fingerprint {q['fingerprint']}"
        + (f" trace {q['trace_id']}" if q.get("trace_id") else "")
        for q in queries
    ]


def trace_links(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    """``(trace_id, url or None)`` for each example trace."""
    ids: list[str] = (payload.get("context") or {}).get("trace_ids") or []
    urls: dict[str, str] = (payload.get("links") or {}).get("traces") or {}
    return [(trace_id, urls.get(trace_id)) for trace_id in ids]
