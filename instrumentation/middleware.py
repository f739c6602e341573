"""Pure ASGI middleware: request latency, in-flight requests and server spans.

A streaming response (``text/event-stream``) is not a request for latency: once its headers
are out it leaves the request histogram and the in-flight gauge and is an open stream
(``http_server_stream_start_seconds``, ``http_server_open_streams``,
``http_server_stream_duration_seconds``), so an event stream held open for minutes never
looks like a slow request to a latency rule.

A pure ASGI middleware rather than ``BaseHTTPMiddleware``: no extra task per request, streams
pass through untouched, and the request ends when the last body chunk is sent, so background
tasks that run after the response are not counted in its duration.
"""

from __future__ import annotations

import time
from collections.abc import Collection, MutableMapping
from typing import Any

from prometheus_client import values
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from instrumentation.catalogue import Catalogue
from instrumentation.routes import TRACKER_KEY, RouteTracker, normalise_method, route_of
from instrumentation.tracing import Tracing

DEFAULT_EXCLUDED_PATHS = frozenset({"/metrics"})


class HttpMetrics:
    """The HTTP server metrics, with label children cached (labels are bounded)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._duration = catalogue.http_request_duration
        self._active = catalogue.http_active_requests
        self._durations: dict[tuple[str, str, int], Any] = {}
        # In one process, a plain counter read at scrape time replaces two locked gauge
        # updates per request (the middleware runs on the event loop's thread only). Worker
        # files in multiprocess mode need the gauge's own inc/dec.
        self._in_flight: dict[tuple[str, str], int] = {}
        self._children: dict[tuple[str, str], Any] = {}
        self._per_worker_files = getattr(values.ValueClass, "__name__", "") == "MmapedValue"
        self._stream_start = catalogue.http_stream_start
        self._stream_duration = catalogue.http_stream_duration
        self._open_streams = catalogue.http_open_streams
        self._streams: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def enter(self, method: str, route: str) -> tuple[str, str]:
        """A request for ``route`` is in flight; returns the key to ``leave`` with."""
        key = (method, route)
        count = self._in_flight.get(key)
        if count is None:
            count = self._track(key)
        self._in_flight[key] = count + 1
        if self._per_worker_files:
            self._children[key].inc()
        return key

    def leave(self, key: tuple[str, str]) -> None:
        """The request entered under ``key`` is over."""
        self._in_flight[key] -= 1
        if self._per_worker_files:
            self._children[key].dec()

    def _track(self, key: tuple[str, str]) -> int:
        child = self._children[key] = self._active.labels(method=key[0], route=key[1])
        if not self._per_worker_files:
            child.set_function(lambda: self._in_flight[key])
        self._in_flight[key] = 0
        return 0

    def stream_opened(self, method: str, route: str, seconds: float) -> None:
        """A streaming response sent its headers ``seconds`` after the request came."""
        key = (method, route)
        children = self._streams.get(key)
        if children is None:
            children = self._streams[key] = (
                self._stream_start.labels(method=method, route=route),
                self._stream_duration.labels(method=method, route=route),
                self._open_streams.labels(method=method, route=route),
            )
        children[0].observe(seconds)
        children[2].inc()

    def stream_closed(self, method: str, route: str, seconds: float) -> None:
        """A stream opened by ``stream_opened`` ended after ``seconds`` open."""
        _, duration, open_streams = self._streams[(method, route)]
        duration.observe(seconds)
        open_streams.dec()

    def observe(
        self, *, method: str, route: str, status_code: int, seconds: float, trace_id: int | None
    ) -> None:
        """Record one finished request; ``trace_id`` (sampled requests) becomes an exemplar."""
        key = (method, route, status_code)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = self._duration.labels(
                method=method, route=route, status_code=str(status_code)
            )
        if trace_id is None:
            child.observe(seconds)
        else:
            child.observe(seconds, {"trace_id": format(trace_id, "032x")})


class TelemetryMiddleware:
    """Count, time and trace every HTTP request by route template.

    >>> from fastapi import FastAPI
    >>> from prometheus_client import CollectorRegistry
    >>> app = FastAPI()
    >>> app.add_middleware(
    ...     TelemetryMiddleware, metrics=HttpMetrics(Catalogue(CollectorRegistry()))
    ... )
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: HttpMetrics | None = None,
        tracing: Tracing | None = None,
        excluded_paths: Collection[str] = DEFAULT_EXCLUDED_PATHS,
        excluded_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._metrics = metrics
        self._tracing = tracing
        self._excluded = frozenset(excluded_paths)
        self._excluded_prefixes = excluded_prefixes

    def _is_excluded(self, scope: MutableMapping[str, Any]) -> bool:
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        return path in self._excluded or (
            bool(self._excluded_prefixes) and path.startswith(self._excluded_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or TRACKER_KEY in scope or self._is_excluded(scope):
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, send, self._metrics, self._tracing)
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException as exc:
            if not exchange.finished:
                exchange.finish(exc)
            raise
        else:
            if not exchange.finished:
                # No final body chunk was sent (client gone, or a response without one).
                exchange.finish(None)
        finally:
            if exchange.trace is not None:
                exchange.trace.detach()


class _Exchange:
    """One request on its way through the middleware: its route as the router learns it,
    its status, and its end (the last body chunk sent, or an error), recorded once."""

    __slots__ = (
        "_downstream", "_method", "_metrics", "_scope", "_started", "_tracker", "active",
        "finished", "status_code", "stream_route", "streamed_at", "trace",
    )  # fmt: skip

    def __init__(
        self, scope: Scope, send: Send, metrics: HttpMetrics | None, tracing: Tracing | None
    ) -> None:
        self._scope = scope
        self._downstream = send
        self._metrics = metrics
        self._method = method = normalise_method(scope["method"])
        self.active: tuple[str, str] | None = None
        self._tracker = RouteTracker(method, self.routed if metrics is not None else None)
        scope[TRACKER_KEY] = self._tracker
        self.trace = tracing.start_request(scope, method) if tracing is not None else None
        self._started = time.perf_counter()
        self.status_code = 500
        self.finished = False
        self.stream_route: str | None = None  # set once a streaming response sent headers
        self.streamed_at = 0.0

    def routed(self, previous: str | None, route: str) -> None:
        # Called by the router (twice under a mount: prefix, then full template).
        if self.active is not None:
            self._metrics.leave(self.active)  # type: ignore[union-attr]
        self.active = self._metrics.enter(self._method, route)  # type: ignore[union-attr]

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status_code = message["status"]
            if self._metrics is not None and _streaming(message):
                self._stream_opened()
        elif kind == "http.response.body" and not message.get("more_body", False):
            try:
                await self._downstream(message)
            finally:
                if not self.finished:
                    self.finish(None)
            return
        await self._downstream(message)

    def _stream_opened(self) -> None:
        # A stream is not a request for latency: from its headers on, it is an open stream
        # (own series), out of the request histogram and the in-flight gauge, as admission
        # control stops counting it then too.
        self.streamed_at = time.perf_counter()
        self.stream_route = route_of(self._scope, self._tracker)
        if self.active is not None:
            self._metrics.leave(self.active)  # type: ignore[union-attr]
            self.active = None
        seconds = self.streamed_at - self._started
        self._metrics.stream_opened(self._method, self.stream_route, seconds)  # type: ignore[union-attr]

    def finish(self, error: BaseException | None) -> None:
        self.finished = True
        seconds = time.perf_counter() - self._started
        scope, method, trace, metrics = self._scope, self._method, self.trace, self._metrics
        route = route_of(scope, self._tracker)
        if self.active is not None:
            metrics.leave(self.active)  # type: ignore[union-attr]
        sampled = trace is not None and trace.sampled
        if sampled:
            trace.finish(  # type: ignore[union-attr]
                method=method,
                route=route,
                status_code=self.status_code,
                error=error,
                attributes={
                    "http.request.method": method,
                    "url.path": scope["path"],
                    "url.scheme": scope.get("scheme", "http"),
                },
            )
        if metrics is None:
            return
        if self.stream_route is not None:
            open_for = time.perf_counter() - self.streamed_at
            metrics.stream_closed(method, self.stream_route, open_for)
            return
        metrics.observe(
            method=method,
            route=route,
            status_code=self.status_code,
            seconds=seconds,
            trace_id=trace.trace_id if sampled else None,  # type: ignore[union-attr]
        )


def _streaming(start: Message) -> bool:
    """Whether a response is a stream (server-sent events), by its ``content-type``."""
    for name, value in start.get("headers", ()):
        if name == b"content-type":
            return bytes(value).startswith(b"text/event-stream")
    return False
