"""``instrument_app`` as settings say: everything, tracing only, or nothing at all."""

from __future__ import annotations

import instrumentation
from alerts.metrics import EngineMetrics
from instrumentation.app import metrics_of, telemetry_of
from instrumentation.middleware import TelemetryMiddleware
from tests.support.stack import running_app


def test_public_surface_is_deliberate() -> None:
    exported = instrumentation.__all__
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    for name in exported:
        assert getattr(instrumentation, name) is not None


async def test_both_switches_off_leaves_the_app_untouched(sqlite_environ: dict[str, str]) -> None:
    environ = {**sqlite_environ, "DYNOSCOPE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
    async with running_app(environ) as api:
        assert (await api.client.get("/metrics")).status_code == 404
        assert (await api.client.get("/healthz")).status_code == 200
        assert not any(m.cls is TelemetryMiddleware for m in api.app.user_middleware)
        assert metrics_of(api.app) is None
        assert telemetry_of(api.app) is None
        observer = type(api.services.cache._observer).__name__
    assert observer == "NullObserver"


async def test_tracing_without_metrics(traced: dict[str, str]) -> None:
    environ = {**traced, "DYNOSCOPE_METRICS_ENABLED": "false"}
    async with running_app(environ) as api:
        assert (await api.client.get("/metrics")).status_code == 404
        assert (await api.client.get("/healthz")).status_code == 200
        assert metrics_of(api.app) is None
        assert telemetry_of(api.app).tracing is not None


async def test_catalogue_is_shared_on_app_state(metrics_only: dict[str, str]) -> None:
    async with running_app(metrics_only) as api:
        # The engine running in this app counts on the app's registry: the same series.
        engine = EngineMetrics.of(metrics_of(api.app))
        engine.rule_evaluations.labels(rule="Watchdog").inc()
        scrape = (await api.client.get("/metrics")).text
    assert 'dynoscope_rule_evaluations_total{rule="Watchdog"} 1.0' in scrape
