"""Request tracing on the OpenTelemetry SDK, sampling first, spans recorded when complete.

The contrib ASGI instrumentation starts three SDK spans per request and makes each current;
the sampler only runs inside ``start_span``, and every attribute write takes a lock. Here:

* the sampling decision comes first, from the configured SDK sampler, on a trace id drawn up
  front: an unsampled request costs one random number and one context-variable write (its
  ids still go to log lines and slow-query reports) and no span object at all;
* a sampled request makes a lightweight sampled span context current (so SQL, Redis and cache
  calls, and any OpenTelemetry-API user, see their parent), and its spans are built once, when
  complete, as SDK ``ReadableSpan`` objects handed straight to the span processors. No lock,
  no attribute re-validation, nothing to update after the fact.

The tracer provider is the app's own, never the global one: a global provider would also
switch on FastAPI's built-in tracing, which would trace every request a second time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

TRACER_NAME = "dynoscope.instrumentation"
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

# (trace id, span id) of the request being handled, sampled or not: log lines and slow-query
# reports carry them. Set by the middleware, read by logging and the query listener.
current_ids: ContextVar[tuple[int, int] | None] = ContextVar("dynoscope_trace_ids", default=None)

_ROOT = Context()
# Trace ids need to be unique, not secret: the fast generator is what the SDK uses too.
_random = random.Random()  # noqa: S311


class TracingError(ValueError):
    """The tracing settings are unusable; the message names the variable."""


def build_sampler(name: str, ratio: float) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` name.

    >>> build_sampler("parentbased_traceidratio", 0.1).get_description()
    'ParentBased{root:TraceIdRatioBased{0.1},remoteParentSampled:AlwaysOnSampler,...}'
    """
    key = name.strip().lower()
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if key in fixed:
        return fixed[key]
    if key == "traceidratio":
        return TraceIdRatioBased(ratio)
    if key == "parentbased_traceidratio":
        return ParentBasedTraceIdRatio(ratio)
    raise TracingError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}; use one of {SAMPLERS}")


def parse_traceparent(value: bytes) -> SpanContext | None:
    """The remote parent in a W3C ``traceparent`` header, or None when malformed.

    >>> parse_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").trace_flags
    1
    """
    parts = value.split(b"-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    if parts[0] == b"ff" or (parts[0] == b"00" and len(parts) != 4):
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


class RequestTrace:
    """The trace of one request: its ids always, a server span only when sampled."""

    __slots__ = (
        "_context_token",
        "_ids_token",
        "_tracing",
        "context",
        "parent",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        *,
        tracing: Tracing | None,
        trace_id: int,
        span_id: int,
        parent: SpanContext | None,
    ) -> None:
        self._tracing = tracing
        self.trace_id = trace_id
        self.parent = parent
        self._ids_token: Token[tuple[int, int] | None] = current_ids.set((trace_id, span_id))
        if tracing is None:
            # Unsampled: ids for log correlation only, no span context made current.
            self._context_token: object | None = None
            return
        self.start_ns = time.time_ns()
        self.context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        self._context_token = otel_context.attach(
            trace.set_span_in_context(NonRecordingSpan(self.context))
        )

    @property
    def sampled(self) -> bool:
        return self._tracing is not None

    def finish(
        self,
        *,
        method: str,
        route: str,
        status_code: int,
        error: BaseException | None,
        attributes: Mapping[str, Any],
    ) -> None:
        """Record the server span (if sampled), named by its route and outcome."""
        if self._tracing is None:
            return
        values = {**attributes, "http.route": route, "http.response.status_code": status_code}
        failed = error is not None or status_code >= 500
        if error is not None:
            values["error.type"] = type(error).__qualname__
        elif status_code >= 500:
            values["error.type"] = str(status_code)
        self._tracing.emit(
            ReadableSpan(
                name=f"{method} {route}",
                context=self.context,
                parent=self.parent,
                resource=self._tracing.resource,
                attributes=values,
                kind=SpanKind.SERVER,
                instrumentation_scope=self._tracing.scope,
                status=_ERROR if failed else _OK,
                start_time=self.start_ns,
                end_time=time.time_ns(),
            )
        )

    def detach(self) -> None:
        """Leave the request's context (call once the app has returned)."""
        if self._context_token is not None:
            otel_context.detach(self._context_token)  # type: ignore[arg-type]
        current_ids.reset(self._ids_token)


class Tracing:
    """An app's tracer provider and span processors, with the sampling-first request path.

    >>> tracing = Tracing(resource=Resource.create({}), sampler=build_sampler("always_on", 1))
    >>> tracing.tracer.start_span("work").end()
    """

    def __init__(self, *, resource: Resource, sampler: Sampler) -> None:
        self.sampler = sampler
        self.resource = resource
        self.scope = InstrumentationScope(TRACER_NAME)
        self._processors: list[SpanProcessor] = []
        self.provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Send spans to ``processor``: both recorded spans and the tracer's."""
        self._processors.append(processor)
        self.provider.add_span_processor(processor)

    def emit(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def start_request(self, scope: MutableMapping[str, Any], method: str) -> RequestTrace:
        """Decide sampling for the request in ``scope``; make its span context current."""
        raw = _header(scope["headers"], b"traceparent")
        parent = parse_traceparent(raw) if raw is not None else None
        if parent is None:
            context = _ROOT
            trace_id = _random.getrandbits(128) or 1
        else:
            context = trace.set_span_in_context(NonRecordingSpan(parent))
            trace_id = parent.trace_id
        decision = self.sampler.should_sample(context, trace_id, method).decision
        tracing = self if decision is Decision.RECORD_AND_SAMPLE else None
        span_id = _random.getrandbits(64) or 1
        return RequestTrace(tracing=tracing, trace_id=trace_id, span_id=span_id, parent=parent)

    def record(
        self,
        name: str,
        *,
        parent: SpanContext,
        kind: SpanKind,
        start_ns: int,
        end_ns: int,
        attributes: Mapping[str, Any],
        error: BaseException | None = None,
    ) -> None:
        """Record a finished child span of ``parent`` (from ``sampled_parent()``)."""
        values = dict(attributes)
        if error is not None:
            values["error.type"] = type(error).__qualname__
        self.emit(
            ReadableSpan(
                name=name,
                context=SpanContext(
                    parent.trace_id,
                    _random.getrandbits(64) or 1,
                    is_remote=False,
                    trace_flags=_SAMPLED,
                ),
                parent=parent,
                resource=self.resource,
                attributes=values,
                kind=kind,
                instrumentation_scope=self.scope,
                status=_ERROR if error is not None else _OK,
                start_time=start_ns,
                end_time=end_ns,
            )
        )

    def shutdown(self) -> None:
        """Flush and stop the span processors."""
        self.provider.shutdown()


def sampled_parent() -> SpanContext | None:
    """The current span context if it is sampled (inside a sampled request), else None."""
    context = trace.get_current_span().get_span_context()
    return context if context.trace_flags.sampled else None
