"""Reading PromQL as text: which metrics an expression selects, and narrowing its selectors.

Dashboards reuse the signals' PromQL (``alerts/rules/signals.py``) and narrow every selector to the
dashboard's variables, so a panel and a rule mean the same thing by "p95" or "hit ratio":

    >>> scope('sum by (route) (rate(up[5m]))', lambda metric: ['job=~"$job"'])
    'sum by (route) (rate(up{job=~"$job"}[5m]))'
    >>> sorted(metric_names('sum(rate(a_total{x="1"}[5m])) / sum(b) and on (x) c > 2'))
    ['a_total', 'b', 'c']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

# One token at a time: strings, label lists after grouping keywords, ranges, selectors and
# identifiers, so label names and durations are never mistaken for metrics.
_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*")
      | (?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))
      | (?P<range>\[[^\]]*\])
      | (?P<name>(?<![\w.])[a-zA-Z_:][\w:]*)(?P<labels>\{[^}]*\})?(?P<call>\s*\()?
    """,
    re.VERBOSE,
)
# Aggregations may put their grouping before the parenthesis: ``sum by (x) (...)``.
_AGGREGATIONS = ("sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", *_AGGREGATIONS, "bottomk"})


def _selectors(expr: str) -> list[re.Match[str]]:
    return [
        match
        for match in _TOKEN.finditer(expr)
        if match.group("name") and not match.group("call") and match["name"] not in _KEYWORDS
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords and label names excluded)."""
    return {match["name"] for match in _selectors(expr)}


def scope(expr: str, matchers: Callable[[str], Sequence[str]]) -> str:
    """``expr`` with ``matchers(metric)`` added to each of its selectors."""
    pieces, end = [], 0
    for match in _selectors(expr):
        extra = list(matchers(match["name"]))
        if not extra:
            continue
        existing = (match["labels"] or "{}")[1:-1].strip()
        labels = ", ".join([*([existing] if existing else []), *extra])
        pieces += [expr[end : match.start()], f"{match['name']}{{{labels}}}"]
        end = match.end()
    return "".join([*pieces, expr[end:]])
