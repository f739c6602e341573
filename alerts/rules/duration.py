"""Prometheus-style durations (``15s``, ``5m``, ``1h30m``, ``500ms``) as ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = (
    ("y", timedelta(days=365)),
    ("w", timedelta(weeks=1)),
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
    ("ms", timedelta(milliseconds=1)),
)
_PATTERN = re.compile("".join(rf"(?:(?P<{unit}>\d+){unit})?" for unit, _ in _UNITS) + "$")


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus duration; ``0`` is allowed, units must be in descending order.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("five minutes")
    Traceback (most recent call last):
    ...
    ValueError: invalid duration 'five minutes': use e.g. 30s, 5m, 1h30m
    """
    if text == "0":
        return timedelta(0)
    match = _PATTERN.match(text)
    if not text or match is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m")
    total = timedelta(0)
    for unit, size in _UNITS:
        if match.group(unit):
            total += int(match.group(unit)) * size
    return total


def format_duration(value: timedelta) -> str:
    """The shortest Prometheus spelling of ``value``.

    >>> format_duration(timedelta(minutes=90))
    '1h30m'
    """
    milliseconds = round(value.total_seconds() * 1000)
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        step = round(size.total_seconds() * 1000)
        count, milliseconds = divmod(milliseconds, step)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
