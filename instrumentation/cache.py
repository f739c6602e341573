"""Cache metrics and spans, fed by the API cache's observer hooks (``Cache.set_observer``)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind

from instrumentation.catalogue import Catalogue
from instrumentation.tracing import Tracing, sampled_parent

# A timed lookup waits here for its result (hit or miss), which the cache reports next,
# so the span can say which it was. Only sampled requests ever set it.
_pending_get: ContextVar[tuple[str, int, int, SpanContext] | None] = ContextVar(
    "dynoscope_pending_cache_get", default=None
)


class CacheTelemetry:
    """A ``CacheObserver``: ``cache_requests_total``, operation durations and cache spans.

    >>> from prometheus_client import CollectorRegistry
    >>> observer = CacheTelemetry(metrics=Catalogue(CollectorRegistry()), tracing=None)
    >>> observer.on_lookup("properties", "hit")
    """

    def __init__(self, *, metrics: Catalogue | None, tracing: Tracing | None) -> None:
        self._metrics = metrics
        self._tracing = tracing
        self._lookups: dict[tuple[str, str], Any] = {}
        self._operations: dict[tuple[str, str], Any] = {}

    def on_lookup(self, cache: str, result: str) -> None:
        if self._metrics is not None:
            key = (cache, result)
            child = self._lookups.get(key)
            if child is None:
                child = self._lookups[key] = self._metrics.cache_requests.labels(*key)
            child.inc()
        if self._tracing is None:
            return
        pending = _pending_get.get()
        if pending is not None:
            _pending_get.set(None)
            name, start, end, parent = pending
            self._span(parent, name, "get", start, end, result)

    def on_operation(self, cache: str, operation: str, seconds: float) -> None:
        if self._metrics is not None:
            key = (cache, operation)
            child = self._operations.get(key)
            if child is None:
                child = self._operations[key] = self._metrics.cache_operation_duration.labels(*key)
            child.observe(seconds)
        if self._tracing is None:
            return
        parent = sampled_parent()
        if parent is None:
            return
        end = time.time_ns()
        start = end - int(seconds * 1e9)
        if operation == "get":
            _pending_get.set((cache, start, end, parent))
        else:
            self._span(parent, cache, operation, start, end, None)

    def _span(
        self,
        parent: SpanContext,
        cache: str,
        operation: str,
        start: int,
        end: int,
        result: str | None,
    ) -> None:
        assert self._tracing is not None
        attributes = {"cache.name": cache, "cache.operation": operation}
        if result is not None:
            attributes["cache.result"] = result
        self._tracing.record(
            f"cache {operation} {cache}",
            parent=parent,
            kind=SpanKind.INTERNAL,
            start_ns=start,
            end_ns=end,
            attributes=attributes,
        )
