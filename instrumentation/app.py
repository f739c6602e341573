"""Wire metrics, tracing and log correlation into a FastAPI app, as its settings say.

``instrument_app(app, settings)`` is the one call: it adds the middleware and ``/metrics`` at
once and returns the ``Telemetry``, whose ``start``/``stop`` instrument the resources an app
builds at start-up (database engine, cache, Redis client) and flush the exporters at
shutdown. An app with a lifespan of its own calls them there, in its order; for any other app
``instrument_app(app, settings, lifespan=True)`` wraps the app's lifespan instead::

    app = FastAPI()
    telemetry = instrument_app(app, TelemetrySettings.from_env(), version="1.2.0")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine = create_async_engine(...)
        await telemetry.start(engine=engine)
        yield
        await telemetry.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.to_thread
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from exporters.metrics import MetricsEndpoint, scrape_registry
from exporters.otlp import span_processor
from exporters.server import MetricsServer
from instrumentation.cache import CacheTelemetry
from instrumentation.catalogue import Catalogue, ProcessMetrics
from instrumentation.correlation import install_log_correlation
from instrumentation.db import QueryListener, instrument_engine
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from instrumentation.process import (
    ProcessSampler,
    configured_workers,
    default_instance_id,
    enable_multiprocess,
    register_process_collector,
    set_instance_cores,
    set_instance_info,
    usable_cores,
)
from instrumentation.redis import instrument_redis
from instrumentation.settings import TelemetrySettings
from instrumentation.tracing import Tracing, build_sampler

log = logging.getLogger("dynoscope.telemetry")


class Observable(Protocol):
    """A cache (or anything) that reports its operations to one observer."""

    def set_observer(self, observer: CacheTelemetry) -> None: ...


class ReportsErrors(Protocol):
    """A component that calls ``hook(dependency)`` when a dependency fails it."""

    def on_error(self, hook: Callable[[str], None]) -> None: ...


METRICS_PATH = "/metrics"


# The one attribute of ``app.state`` this package keeps; read it through ``telemetry_of``.
_STATE = "dynoscope_telemetry"


@dataclass
class Telemetry:
    """Everything ``instrument_app`` set up for one app (``telemetry_of(app)``)."""

    settings: TelemetrySettings
    instance_id: str
    version: str = "unknown"
    metrics: Catalogue | None = None
    scrape_source: Collector | None = None
    tracing: Tracing | None = None
    _listener: QueryListener | None = None
    _sampler: ProcessSampler | None = None
    _server: MetricsServer | None = None
    _started: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: TelemetrySettings, *, version: str = "unknown") -> Telemetry:
        """Build the registry, catalogue and tracer provider ``settings`` ask for."""
        telemetry = cls(
            settings=settings,
            instance_id=settings.instance_id or default_instance_id(),
            version=version,
        )
        if settings.metrics_enabled:
            telemetry._build_metrics()
        if not settings.otel_sdk_disabled:
            resource = Resource.create(
                {
                    "service.name": settings.otel_service_name,
                    "service.instance.id": telemetry.instance_id,
                    "service.version": version,
                }
            )
            telemetry.tracing = Tracing(
                resource=resource,
                sampler=build_sampler(
                    settings.otel_traces_sampler, settings.otel_traces_sampler_arg
                ),
            )
        return telemetry

    def _build_metrics(self) -> None:
        directory = self.settings.prometheus_multiproc_dir
        if directory is not None:
            enable_multiprocess(directory)
        registry = CollectorRegistry(auto_describe=True)
        self.metrics = Catalogue(registry)
        if directory is None:
            register_process_collector(registry)
        else:
            self._sampler = ProcessSampler(ProcessMetrics(registry))
        set_instance_info(self.metrics, instance_id=self.instance_id, version=self.version)
        workers = configured_workers(os.environ)
        set_instance_cores(self.metrics, workers=workers, cores=usable_cores(workers))
        self.scrape_source = scrape_registry(registry, directory)

    async def start(
        self,
        *,
        engine: AsyncEngine | None = None,
        cache: Observable | None = None,
        redis: Any = None,
        error_sources: Sequence[ReportsErrors] = (),
    ) -> None:
        """Instrument the resources built at start-up and start the exporters.

        ``engine``: statements, slow queries, errors and the pool; ``cache``: anything with
        ``set_observer`` (lookups and their duration); ``redis``: spans for its commands;
        ``error_sources``: anything with ``on_error(hook)``, counted per dependency.
        """
        settings = self.settings
        tracing = self.tracing
        if engine is not None:
            self._listener = instrument_engine(
                engine,
                metrics=self.metrics,
                tracing=tracing,
                slow_query_seconds=settings.db_slow_query_seconds,
            )
        if cache is not None:
            cache.set_observer(CacheTelemetry(metrics=self.metrics, tracing=tracing))
        if self.metrics is not None:
            errors = self.metrics.dependency_errors
            for source in error_sources:
                source.on_error(lambda dependency: errors.labels(dependency=dependency).inc())
        if tracing is not None and redis is not None:
            instrument_redis(redis, tracing=tracing)
        if self._sampler is not None:
            self._sampler.start()
        if self.scrape_source is not None:
            self._started.append(self._start_metrics_server() or f"metrics on {METRICS_PATH}")
        if self.tracing is not None:
            processor, where = span_processor(
                otlp_endpoint=settings.otel_exporter_otlp_endpoint,
                traces_file=settings.traces_file,
            )
            self.tracing.add_span_processor(processor)
            sampler = settings.otel_traces_sampler
            if sampler.lower().endswith("traceidratio"):
                sampler = f"{sampler} {settings.otel_traces_sampler_arg:g}"
            self._started.append(f"traces to {where} ({sampler})")
        log.info("telemetry for %s: %s", self.instance_id, "; ".join(self._started) or "off")

    def _start_metrics_server(self) -> str | None:
        port = self.settings.metrics_port
        if port is None or self.scrape_source is None:
            return None
        token = self.settings.metrics_token
        self._server = MetricsServer(
            self.scrape_source,
            host=self.settings.host,
            port=port,
            token=token.get_secret_value() if token is not None else None,
            reuse_port=self.settings.prometheus_multiproc_dir is not None,
        )
        if not self._server.start():
            self._server = None
            return f"metrics port {port} unavailable"
        return f"metrics on port {port}"

    async def stop(self) -> None:
        """Detach, flush the span exporters and close the metrics port."""
        if self._listener is not None:
            self._listener.remove()
            self._listener = None
        if self._sampler is not None:
            await self._sampler.stop()
        if self._server is not None:
            await anyio.to_thread.run_sync(self._server.stop)
            self._server = None
        if self.tracing is not None:
            await anyio.to_thread.run_sync(self.tracing.shutdown)
        self._started.clear()
        directory = self.settings.prometheus_multiproc_dir
        if directory is not None and self.metrics is not None:
            # Live gauges (memory, in-flight requests) of this worker stop counting.
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def telemetry_of(app: Starlette) -> Telemetry | None:
    """What ``instrument_app`` set up for ``app`` (None before, or when it added nothing)."""
    telemetry: Telemetry | None = getattr(app.state, _STATE, None)
    return telemetry


def metrics_of(app: Starlette) -> Catalogue | None:
    """The metric catalogue of ``app`` (None when metrics are off), for other packages to
    register with and count in."""
    telemetry = telemetry_of(app)
    return telemetry.metrics if telemetry is not None else None


def instrument_app(
    app: FastAPI,
    settings: TelemetrySettings,
    *,
    version: str = "unknown",
    lifespan: bool = False,
    unmeasured: tuple[str, ...] = (),
) -> Telemetry | None:
    """Add metrics, tracing and log correlation to ``app`` as ``settings`` say.

    Paths under the ``unmeasured`` prefixes (an admin console) are not the service's traffic:
    neither measured nor traced, like ``/metrics``.

    ``DYNOSCOPE_METRICS_ENABLED=false`` with ``OTEL_SDK_DISABLED=true`` adds nothing at all
    (and returns None). Other packages reach what it set up through ``telemetry_of(app)`` and
    ``metrics_of(app)``. ``lifespan=True`` starts and stops the telemetry around the app's own
    lifespan, for apps that do not call ``start``/``stop`` themselves.
    """
    setattr(app.state, _STATE, None)
    if not settings.metrics_enabled and settings.otel_sdk_disabled:
        return None
    telemetry = Telemetry.from_settings(settings, version=version)
    setattr(app.state, _STATE, telemetry)
    app.add_middleware(
        TelemetryMiddleware,
        metrics=HttpMetrics(telemetry.metrics) if telemetry.metrics is not None else None,
        tracing=telemetry.tracing,
        excluded_prefixes=unmeasured,
    )
    if telemetry.scrape_source is not None and settings.metrics_port is None:
        token = settings.metrics_token
        endpoint = MetricsEndpoint(
            telemetry.scrape_source,
            token=token.get_secret_value() if token is not None else None,
        )
        app.add_route(METRICS_PATH, endpoint.handle, methods=["GET"], include_in_schema=False)
    if telemetry.tracing is not None:
        install_log_correlation()
    if lifespan:
        _wrap_lifespan(app, telemetry)
    return telemetry


def _wrap_lifespan(app: FastAPI, telemetry: Telemetry) -> None:
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[Any]:
        async with original(app) as state:
            await telemetry.start()
            try:
                yield state
            finally:
                await telemetry.stop()

    app.router.lifespan_context = wrapped
