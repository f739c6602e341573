from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.query import QueryResult
from alerts.rule import Query
from api.db import create_engine
from api.migrate import upgrade
from api.settings import Settings


@contextlib.asynccontextmanager
async def migrated(environ: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    built = create_engine(Settings.from_env(environ))
    await upgrade(built)
    try:
        yield built
    finally:
        await built.dispose()


@pytest.fixture
async def engine(environ: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    """A migrated database on each stack (SQLite, PostgreSQL)."""
    async with migrated(environ) as built:
        yield built


@pytest.fixture
async def sqlite_engine(sqlite_environ: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database, for tests about timing rather than storage."""
    async with migrated(sqlite_environ) as built:
        yield built


class ScriptedSource:
    """A source (an interface we own) answering what the test scripts, counting questions."""

    name = "scripted"

    def __init__(self) -> None:
        self.answers: dict[str, QueryResult] = {}
        self.asked: list[str] = []

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        self.asked.extend(q.promql for q in queries)
        return {q: self.answers[q.promql] for q in queries}
