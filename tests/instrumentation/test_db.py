"""Statement metrics, slow queries (real PostgreSQL) and pool usage."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exporters.tracefile import read_spans
from instrumentation.catalogue import Catalogue
from instrumentation.db import instrument_engine
from instrumentation.statement import describe
from tests.instrumentation.support import parse_text, sample_value
from tests.support.stack import running_app

SECRET = "hunter2-do-not-log"


def _add_slow_route(app: FastAPI) -> None:
    @app.get("/slow")
    async def slow() -> dict[str, str]:
        async with app.state.services.engine.connect() as connection:
            await connection.execute(
                text("SELECT pg_sleep(:seconds), CAST(:secret AS text) AS note WHERE 42 = 42"),
                {"seconds": 1.1, "secret": SECRET},
            )
        return {"done": "yes"}


@pytest.mark.postgres
async def test_pg_sleep_is_one_slow_query_with_one_log_line(
    shared_environ: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        **shared_environ,
        "OTEL_TRACES_SAMPLER": "always_on",
        "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
    }
    async with running_app(environ) as api:
        _add_slow_route(api.app)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dynoscope.db"):
            assert (await api.client.get("/slow")).status_code == 200
            assert (await api.client.get("/properties")).status_code == 200
        scrape = (await api.client.get("/metrics")).text
    families = parse_text(scrape)
    assert sample_value(families, "db_client_slow_queries_total") == 1.0
    assert sample_value(families, "db_client_slow_queries_total", operation="SELECT") == 1.0
    slow_buckets = sample_value(
        families, "db_client_operation_duration_seconds_bucket", operation="SELECT", le="1.0"
    )
    all_selects = sample_value(
        families, "db_client_operation_duration_seconds_count", operation="SELECT"
    )
    assert all_selects - slow_buckets == 1.0  # exactly one SELECT above 1 s

    lines = [r for r in caplog.records if r.name == "dynoscope.db"]
    assert len(lines) == 1
    record = lines[0]
    fields = record.slow_query  # type: ignore[attr-defined]
    assert fields["duration_seconds"] >= 1.1
    assert fields["operation"] == "SELECT"
    assert len(fields["fingerprint"]) == 16
    assert fields["statement"] == "SELECT pg_sleep(?), CAST(? AS text) AS note WHERE ? = ?"
    message = record.getMessage()
    assert f"fingerprint={fields['fingerprint']}" in message
    assert SECRET not in message
    assert "1.1," not in message
    assert "42 = 42" not in message
    # The log line names the request's trace, and that trace holds the statement's span.
    spans = read_spans(tmp_path / "traces.jsonl")
    server = next(s for s in spans if s.name == "GET /slow")
    assert fields["trace_id"] == server.trace_id == record.trace_id  # type: ignore[attr-defined]
    children = [s for s in spans if s.parent_id == server.span_id]
    assert any(s.attributes.get("db.system.name") == "postgresql" for s in children)
    listing = next(s for s in spans if s.name == "GET /properties")
    redis_calls = [
        s for s in spans if s.parent_id == listing.span_id and s.name.startswith("redis")
    ]
    assert redis_calls, "the cache's Redis commands are children of the request span"
    # The lookup (sent together with the lookups of the same moment) keeps its own span.
    assert "redis EVALSHA" in {s.name for s in redis_calls}


@contextlib.asynccontextmanager
async def instrumented_sqlite(
    tmp_path: Path, *, slow_query_seconds: float
) -> AsyncIterator[tuple[AsyncEngine, Catalogue]]:
    """A SQLite engine with the query listener attached, detached and disposed afterwards."""
    metrics = Catalogue(CollectorRegistry())
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    listener = instrument_engine(
        engine, metrics=metrics, tracing=None, slow_query_seconds=slow_query_seconds
    )
    try:
        yield engine, metrics
    finally:
        listener.remove()
        await engine.dispose()


async def test_fast_queries_are_timed_but_not_slow(tmp_path: Path) -> None:
    async with (
        instrumented_sqlite(tmp_path, slow_query_seconds=1.0) as (engine, metrics),
        engine.begin() as connection,
    ):
        await connection.execute(text("CREATE TABLE homes (id INTEGER PRIMARY KEY)"))
        await connection.execute(text("INSERT INTO homes (id) VALUES (1), (2)"))
        await connection.execute(text("SELECT id FROM homes WHERE id = :id"), {"id": 1})
        await connection.execute(text("DELETE FROM homes WHERE id = 2"))
        families = parse_text(generate_latest(metrics.registry).decode())
        assert sample_value(families, "db_client_connections", state="used") == 1.0
    count = "db_client_operation_duration_seconds_count"
    assert sample_value(families, count, operation="CREATE") == 1.0
    assert sample_value(families, count, operation="INSERT", table="homes") == 1.0
    assert sample_value(families, count, operation="SELECT", table="homes") == 1.0
    assert sample_value(families, count, operation="DELETE", table="homes") == 1.0
    assert sample_value(families, "db_client_slow_queries_total") == 0.0


async def test_threshold_is_compared_not_timed(tmp_path: Path) -> None:
    # A zero-ish threshold makes every statement "slow": the comparison, not the clock, is tested.
    async with (
        instrumented_sqlite(tmp_path, slow_query_seconds=1e-9) as (engine, metrics),
        engine.connect() as connection,
    ):
        await connection.execute(text("SELECT 1"))
    families = parse_text(generate_latest(metrics.registry).decode())
    assert sample_value(families, "db_client_slow_queries_total", operation="SELECT") == 1.0
    assert sample_value(families, "db_client_connections", state="used") == 0.0


async def test_threshold_comes_from_settings(sqlite_environ: dict[str, str]) -> None:
    async with running_app({**sqlite_environ, "DB_SLOW_QUERY_SECONDS": "1e-9"}) as api:
        assert (await api.client.get("/properties?city=Oslo")).status_code == 200
        families = parse_text((await api.client.get("/metrics")).text)
    assert sample_value(families, "db_client_slow_queries_total", table="properties") >= 1.0


async def test_slow_query_series_exist_at_zero_before_the_first_slow_query(
    tmp_path: Path,
) -> None:
    async with (
        instrumented_sqlite(tmp_path, slow_query_seconds=60) as (engine, metrics),
        engine.connect() as connection,
    ):
        await connection.execute(text("SELECT 1"))
    # rate() and increase() ignore a series whose first sample is already 1: the counter must
    # be scraped at 0 before the first slow query, or that query never alerts.
    scrape = generate_latest(metrics.registry).decode()
    assert 'db_client_slow_queries_total{operation="SELECT",table="' in scrape
    families = parse_text(scrape)
    assert sample_value(families, "db_client_slow_queries_total", operation="SELECT") == 0.0


async def test_a_slow_statement_leaves_its_fingerprint_as_an_exemplar(tmp_path: Path) -> None:
    # The alert engine names the slowest statements of an alert from these exemplars.
    async with (
        instrumented_sqlite(tmp_path, slow_query_seconds=1e-9) as (engine, metrics),
        engine.connect() as connection,
    ):
        await connection.execute(text("SELECT 42"))
    examples = [
        sample.exemplar.labels
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "db_client_operation_duration_seconds_bucket" and sample.exemplar
    ]
    # Outside a sampled request there is no trace to point to: the fingerprint alone.
    assert examples == [{"fingerprint": describe("SELECT 42").fingerprint}]


async def test_a_fast_statement_outside_a_trace_has_no_exemplar(tmp_path: Path) -> None:
    async with (
        instrumented_sqlite(tmp_path, slow_query_seconds=60) as (engine, metrics),
        engine.connect() as connection,
    ):
        await connection.execute(text("SELECT 42"))
    assert not any(
        sample.exemplar
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "db_client_operation_duration_seconds_bucket"
    )
