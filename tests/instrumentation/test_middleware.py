"""HTTP metrics: route templates, bounded labels, what is and is not counted."""

from __future__ import annotations

import asyncio
import random
import string

import httpx
from fastapi import APIRouter, BackgroundTasks, FastAPI
from prometheus_client import CollectorRegistry, generate_latest

from instrumentation.catalogue import Catalogue
from instrumentation.middleware import HttpMetrics, TelemetryMiddleware
from tests.instrumentation.support import parse_text, sample_value


def _app() -> tuple[FastAPI, Catalogue]:
    metrics = Catalogue(CollectorRegistry())
    app = FastAPI()
    items = APIRouter(prefix="/items")
    nested = APIRouter(prefix="/{item_id}/parts")

    @nested.get("/{part_id}")
    async def part(item_id: int, part_id: int) -> dict[str, int]:
        return {"part": part_id}

    @items.get("/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    items.include_router(nested)
    app.include_router(items, prefix="/v1")

    tenant = FastAPI()
    reports = APIRouter(prefix="/reports")

    @reports.get("/{report_id}")
    async def report(report_id: int) -> dict[str, int]:
        return {"report": report_id}

    tenant.include_router(reports)
    app.mount("/tenants/{tenant}", tenant)

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/metrics")
    async def fake_metrics() -> dict[str, str]:
        return {}

    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    return app, metrics


def _client(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _counts(metrics: Catalogue) -> dict[tuple[str, str, str], float]:
    families = parse_text(generate_latest(metrics.registry).decode())
    return {
        (s.labels["method"], s.labels["route"], s.labels["status_code"]): s.value
        for s in families["http_server_request_duration_seconds"].samples
        if s.name.endswith("_count")
    }


async def test_route_label_is_the_template_for_nested_routers_and_mounts() -> None:
    app, metrics = _app()
    async with _client(app) as client:
        assert (await client.get("/v1/items/3")).status_code == 200
        assert (await client.get("/v1/items/3/parts/9")).status_code == 200
        assert (await client.get("/tenants/acme/reports/5")).status_code == 200
        assert (await client.get("/v1/items/not-a-number")).status_code == 422
        assert (await client.post("/plain")).status_code == 405
    assert _counts(metrics) == {
        ("GET", "/v1/items/{item_id}", "200"): 1.0,
        ("GET", "/v1/items/{item_id}/parts/{part_id}", "200"): 1.0,
        ("GET", "/tenants/{tenant}/reports/{report_id}", "200"): 1.0,
        ("GET", "/v1/items/{item_id}", "422"): 1.0,
        ("POST", "/plain", "405"): 1.0,
    }


async def test_route_label_ignores_the_root_path() -> None:
    app, metrics = _app()
    async with _client(app, root_path="/api") as client:
        assert (await client.get("/api/v1/items/3")).status_code == 200
        assert (await client.get("/api/tenants/acme/reports/5")).status_code == 200
        assert (await client.get("/api/metrics")).status_code == 200
    assert _counts(metrics) == {
        ("GET", "/v1/items/{item_id}", "200"): 1.0,
        ("GET", "/tenants/{tenant}/reports/{report_id}", "200"): 1.0,
    }


async def test_random_paths_and_methods_add_no_series() -> None:
    app, metrics = _app()
    rng = random.Random(7)
    methods = ["GET", "POST", "DELETE", "PURGE", "BREW", "X" + "".join(rng.choices("ABC", k=5))]
    async with _client(app) as client:
        await client.get("/v1/items/1")
        before = len(generate_latest(metrics.registry).splitlines())
        for _ in range(10_000):
            path = "/" + "/".join(
                "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 12)))
                for _ in range(rng.randint(1, 4))
            )
            await client.request(rng.choice(methods), path)
    counts = _counts(metrics)
    routes = {route for _, route, _ in counts}
    assert routes <= {"/v1/items/{item_id}", "<unmatched>"}
    assert {method for method, _, _ in counts} <= {"GET", "POST", "DELETE", "_OTHER"}
    assert sum(v for (_, r, _), v in counts.items() if r == "<unmatched>") == 10_000
    # A handful of series for <unmatched> x 4 method values, never one per path.
    after = len(generate_latest(metrics.registry).splitlines())
    assert after - before <= 4 * 17


async def test_metrics_path_is_not_counted_by_default() -> None:
    app, metrics = _app()
    async with _client(app) as client:
        await client.get("/metrics")
        await client.get("/plain")
    assert _counts(metrics) == {("GET", "/plain", "200"): 1.0}


async def test_duration_is_recorded_before_background_tasks_run() -> None:
    metrics = Catalogue(CollectorRegistry())
    app = FastAPI()
    seen_by_background: list[float] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def background() -> None:
        # The request is already observed when its background work starts...
        families = parse_text(generate_latest(metrics.registry).decode())
        seen_by_background.append(
            sample_value(families, "http_server_request_duration_seconds_count", route="/work")
        )
        started.set()
        await release.wait()

    @app.post("/work")
    async def work(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(background)
        return {"queued": "yes"}

    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    async with _client(app) as client:
        request = asyncio.create_task(client.post("/work"))
        await started.wait()
        # ...and while it is still running, the request is no longer in flight.
        families = parse_text(generate_latest(metrics.registry).decode())
        active = sample_value(families, "http_server_active_requests", route="/work")
        release.set()
        assert (await request).status_code == 200
    assert seen_by_background == [1.0]
    assert active == 0.0


async def test_in_flight_requests_carry_the_route() -> None:
    metrics = Catalogue(CollectorRegistry())
    app = FastAPI()
    entered, release = asyncio.Event(), asyncio.Event()

    @app.get("/slow/{n}")
    async def slow(n: int) -> dict[str, int]:
        entered.set()
        await release.wait()
        return {"n": n}

    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    async with _client(app) as client:
        request = asyncio.create_task(client.get("/slow/1"))
        await entered.wait()
        families = parse_text(generate_latest(metrics.registry).decode())
        during = sample_value(families, "http_server_active_requests", route="/slow/{n}")
        release.set()
        await request
    families = parse_text(generate_latest(metrics.registry).decode())
    assert during == 1.0
    assert sample_value(families, "http_server_active_requests", route="/slow/{n}") == 0.0


async def test_unhandled_errors_count_as_500() -> None:
    metrics = Catalogue(CollectorRegistry())
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    app.add_middleware(TelemetryMiddleware, metrics=HttpMetrics(metrics))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/boom")).status_code == 500
    assert _counts(metrics) == {("GET", "/boom", "500"): 1.0}
