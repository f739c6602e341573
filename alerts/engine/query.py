"""What a rule asks a metric source, and what comes back.

A query is a value: rules that ask the same question share one query, so a source sends it
once per cycle. A result is either a ``Vector`` (possibly empty: "no data") or a
``QueryFailed``; the state machine treats the two very differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name: hashable, so usable as a key."""


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """``{"b": "2", "a": "1"}`` → ``(("a", "1"), ("b", "2"))``."""
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class Sample:
    """One series of a query result: its labels and its value at the evaluation time."""

    labels: Labels
    value: float


@dataclass(frozen=True)
class Vector:
    """A successful answer; an empty vector means "no data"."""

    samples: tuple[Sample, ...] = ()

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> Vector:
        """A vector with its samples in label order, so equal answers compare equal."""
        return cls(tuple(sorted(samples, key=lambda sample: sample.labels)))


@dataclass(frozen=True)
class QueryFailed:
    """The source did not answer; alert state must not change because of it."""

    reason: str


QueryResult = Vector | QueryFailed


@dataclass(frozen=True)
class Exemplar:
    """One example observation of a histogram: its series, value, time and exemplar labels.

    ``labels`` are the series' labels (``route``, ``instance``, ...); ``example`` are the
    exemplar's own (``trace_id``, and ``fingerprint`` on statement durations).
    """

    labels: Labels
    value: float
    at: float
    example: Labels

    @property
    def trace_id(self) -> str:
        return dict(self.example).get("trace_id", "")


@dataclass(frozen=True)
class SlowQuery:
    """A statement seen among the slowest of an alert's window, by fingerprint."""

    fingerprint: str
    operation: str
    table: str
    seconds: float
    trace_id: str = ""


@dataclass(frozen=True)
class Examples:
    """What on-call gets besides the numbers: example slow traces and the slowest statements."""

    trace_ids: tuple[str, ...] = ()
    queries: tuple[SlowQuery, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.trace_ids or self.queries)
