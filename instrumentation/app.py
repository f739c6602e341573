"""Wire metrics, tracing and log correlation into a FastAPI app, as its settings say.

``instrument_app(app, settings)`` is the one call: it adds the middleware and ``/metrics``
at once, and hooks the app's lifespan so the database engine, cache and Redis client built
at start-up are instrumented, and exporters are flushed and closed at shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.registry import Collector

from api import __version__
from api.settings import Settings
from exporters.metrics import MetricsEndpoint, scrape_registry
from exporters.otlp import span_processor
from exporters.server import MetricsServer
from instrumentation.cache import CacheTelemetry
from instrumentation.catalogue import Catalogue, ProcessMetrics
from instrumentation.db import QueryListener, instrument_engine
from instrumentation.logging import install_log_correlation
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from instrumentation.process import (
    ProcessSampler,
    default_instance_id,
    enable_multiprocess,
    register_process_collector,
    set_instance_info,
)
from instrumentation.redis import instrument_redis
from instrumentation.tracing import Tracing, build_sampler

log = logging.getLogger("dynoscope.telemetry")

METRICS_PATH = "/metrics"


@dataclass
class Telemetry:
    """Everything ``instrument_app`` set up for one app (on ``app.state.telemetry``)."""

    settings: Settings
    instance_id: str
    metrics: Catalogue | None = None
    scrape_source: Collector | None = None
    tracing: Tracing | None = None
    _listener: QueryListener | None = None
    _sampler: ProcessSampler | None = None
    _server: MetricsServer | None = None
    _started: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        """Build the registry, catalogue and tracer provider ``settings`` ask for."""
        telemetry = cls(
            settings=settings, instance_id=settings.instance_id or default_instance_id()
        )
        if settings.metrics_enabled:
            telemetry._build_metrics()
        if not settings.otel_sdk_disabled:
            resource = Resource.create(
                {
                    "service.name": settings.otel_service_name,
                    "service.instance.id": telemetry.instance_id,
                    "service.version": __version__,
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
        set_instance_info(self.metrics, instance_id=self.instance_id, version=__version__)
        self.scrape_source = scrape_registry(registry, directory)

    async def start(self, services: Any) -> None:
        """Instrument the resources built at start-up and start the exporters."""
        settings = self.settings
        tracing = self.tracing
        if services is not None:
            self._listener = instrument_engine(
                services.engine,
                metrics=self.metrics,
                tracing=tracing,
                slow_query_seconds=settings.db_slow_query_seconds,
            )
            services.cache.set_observer(CacheTelemetry(metrics=self.metrics, tracing=tracing))
            if self.metrics is not None:
                errors = self.metrics.dependency_errors
                services.broadcaster.on_error(
                    lambda dependency: errors.labels(dependency=dependency).inc()
                )
            if tracing is not None and services.redis is not None:
                instrument_redis(services.redis, tracing=tracing)
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


def instrument_app(app: FastAPI, settings: Settings) -> None:
    """Add metrics, tracing and log correlation to ``app`` as ``settings`` say.

    ``DYNOSCOPE_METRICS_ENABLED=false`` with ``OTEL_SDK_DISABLED=true`` adds nothing at all.
    The catalogue is on ``app.state.metrics`` (None when metrics are off) for other packages.
    """
    app.state.metrics = None
    app.state.telemetry = None
    if not settings.metrics_enabled and settings.otel_sdk_disabled:
        return
    telemetry = Telemetry.from_settings(settings)
    app.state.telemetry = telemetry
    app.state.metrics = telemetry.metrics
    app.add_middleware(
        TelemetryMiddleware,
        metrics=HttpMetrics(telemetry.metrics) if telemetry.metrics is not None else None,
        tracing=telemetry.tracing,
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
    _hook_lifespan(app, telemetry)


def _hook_lifespan(app: FastAPI, telemetry: Telemetry) -> None:
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with original(app) as state:
            await telemetry.start(getattr(app.state, "services", None))
            try:
                yield state
            finally:
                await telemetry.stop()

    app.router.lifespan_context = lifespan
