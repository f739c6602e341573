"""The interface every metric source offers the evaluator."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from alerts.engine.query import QueryResult
from alerts.rules.rule import Query


class Source(Protocol):
    """Answers a cycle's queries at one evaluation time; each distinct query is asked once."""

    name: str

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        """One result per query; a failure is a ``QueryFailed`` value, never an exception."""
        ...
