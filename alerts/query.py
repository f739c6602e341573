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
