"""Reusable FastAPI / SQLAlchemy / Redis instrumentation.

One call instruments the property API (``instrument_app(app, settings)``); the parts below
let any FastAPI app do the same piece by piece::

    registry = CollectorRegistry()
    metrics = Catalogue(registry)
    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    instrument_engine(engine, metrics=metrics, tracing=None, slow_query_seconds=1.0)
"""

from instrumentation.app import Telemetry, instrument_app
from instrumentation.cache import CacheTelemetry
from instrumentation.catalogue import OTHER_METHOD, UNMATCHED_ROUTE, Catalogue, ProcessMetrics
from instrumentation.db import QueryListener, instrument_engine
from instrumentation.logging import install_log_correlation
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from instrumentation.process import ProcessSampler
from instrumentation.redis import instrument_redis
from instrumentation.statement import Statement, describe, normalise
from instrumentation.tracing import (
    RequestTrace,
    Tracing,
    build_sampler,
    current_ids,
    sampled_parent,
)

__all__ = [
    "OTHER_METHOD",
    "UNMATCHED_ROUTE",
    "CacheTelemetry",
    "Catalogue",
    "HttpMetrics",
    "ProcessMetrics",
    "ProcessSampler",
    "QueryListener",
    "RequestTrace",
    "Statement",
    "Telemetry",
    "TelemetryMiddleware",
    "Tracing",
    "build_sampler",
    "current_ids",
    "describe",
    "install_log_correlation",
    "instrument_app",
    "instrument_engine",
    "instrument_redis",
    "normalise",
    "sampled_parent",
]
