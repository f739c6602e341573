"""Reusable FastAPI / SQLAlchemy / Redis instrumentation.

One call instruments a FastAPI app (``instrument_app(app, TelemetrySettings.from_env())``,
then ``telemetry.start(engine=...)`` in its lifespan, or ``lifespan=True``); the parts below
let any app do the same piece by piece::

    registry = CollectorRegistry()
    metrics = Catalogue(registry)
    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    instrument_engine(engine, metrics=metrics, tracing=None, slow_query_seconds=1.0)
"""

from instrumentation.app import Telemetry, instrument_app, metrics_of, telemetry_of
from instrumentation.cache import CacheTelemetry
from instrumentation.catalogue import OTHER_METHOD, UNMATCHED_ROUTE, Catalogue, ProcessMetrics
from instrumentation.correlation import install_log_correlation
from instrumentation.db import QueryListener, instrument_engine
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from instrumentation.process import ProcessSampler
from instrumentation.redis import instrument_redis
from instrumentation.settings import SettingsError, TelemetrySettings
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
    "SettingsError",
    "Statement",
    "Telemetry",
    "TelemetryMiddleware",
    "TelemetrySettings",
    "Tracing",
    "build_sampler",
    "current_ids",
    "describe",
    "install_log_correlation",
    "instrument_app",
    "instrument_engine",
    "instrument_redis",
    "metrics_of",
    "normalise",
    "sampled_parent",
    "telemetry_of",
]
