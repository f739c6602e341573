"""Cache hits, misses, errors and operation times through the API cache's observer."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from api.cache import Cache, MemoryBackend
from instrumentation.cache import CacheTelemetry
from instrumentation.catalogue import Catalogue
from instrumentation.tracing import Tracing, build_sampler
from tests.instrumentation.support import parse_text, sample_value


class BrokenBackend(MemoryBackend):
    async def lookup(self, generation_key: str, head: str, tail: str) -> tuple[int, bytes | None]:
        raise ConnectionError("redis is down")

    async def ping(self) -> None:
        raise ConnectionError("redis is down")


async def _load() -> list[int]:
    return [1, 2, 3]


def _scrape(metrics: Catalogue) -> Any:
    return parse_text(generate_latest(metrics.registry).decode())


async def test_hits_misses_and_operation_times() -> None:
    metrics = Catalogue(CollectorRegistry())
    cache = Cache(backend=MemoryBackend(), name="properties")
    cache.set_observer(CacheTelemetry(metrics=metrics, tracing=None))
    for _ in range(3):
        assert await cache.cache_with_ttl("list", 60, _load) == [1, 2, 3]
    families = _scrape(metrics)
    assert sample_value(families, "cache_requests_total", cache="properties", result="miss") == 1
    assert sample_value(families, "cache_requests_total", cache="properties", result="hit") == 2
    count = "cache_operation_duration_seconds_count"
    assert sample_value(families, count, cache="properties", operation="get") == 3
    assert sample_value(families, count, cache="properties", operation="set") == 1


async def test_backend_errors_are_counted_and_the_loader_still_answers() -> None:
    metrics = Catalogue(CollectorRegistry())
    now = [0.0]
    cache = Cache(backend=BrokenBackend(), name="properties", clock=lambda: now[0])
    cache.set_observer(CacheTelemetry(metrics=metrics, tracing=None))
    assert await cache.cache_with_ttl("list", 60, _load) == [1, 2, 3]
    assert await cache.cache_with_ttl("list", 60, _load) == [1, 2, 3]
    families = _scrape(metrics)
    assert sample_value(families, "cache_requests_total", result="error") == 2
    assert sample_value(families, "cache_requests_total", result="hit") == 0


async def test_cache_spans_only_inside_a_sampled_request() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(resource=Resource.create({}), sampler=build_sampler("always_on", 1))
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    cache = Cache(backend=MemoryBackend(), name="properties")
    cache.set_observer(CacheTelemetry(metrics=None, tracing=tracing))
    await cache.cache_with_ttl("outside", 60, _load)
    assert exporter.get_finished_spans() == ()

    scope = {"type": "http", "headers": [], "path": "/x"}
    request = tracing.start_request(scope, "GET")
    try:
        await cache.cache_with_ttl("inside", 60, _load)
        await cache.cache_with_ttl("inside", 60, _load)
    finally:
        request.detach()
    spans = exporter.get_finished_spans()
    described = [(s.name, (s.attributes or {}).get("cache.result")) for s in spans]
    assert described == [
        ("cache get properties", "miss"),
        ("cache set properties", None),
        ("cache get properties", "hit"),
    ]
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in spans)
    assert all(s.end_time is not None and s.start_time is not None for s in spans)
