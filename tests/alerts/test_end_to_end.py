"""End to end on real components: another client holding the listings table makes writes
take over a second, and the webhook receives ``DatabaseSlowQuery`` and ``ApiLatencyP95High``
firing, then resolved once the lock is let go.

Once with a real Prometheus scraping the served API and the engine running on its own (as
``dynoscope alerts run`` does), once in embedded mode with the local source inside the API.
The shipped rules are used with short windows (5 s), ``for`` and intervals (1 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from alerts.engine.monitor import Monitor, open_store
from alerts.http.state import engine_state
from api.settings import Settings
from instrumentation.catalogue import Catalogue
from tests.alerts.harness import (
    Receiver,
    eventually,
    in_background,
    rules_file,
    served_api,
    webhook_receiver,
)
from tests.support.locks import WRITE_ROUTE, table_held, writer
from tests.support.prometheus import running_prometheus
from tests.support.users import register_and_login

FAULT_SECONDS = 1.1  # each hold of the lock: longer than the 1 s slow-query threshold

ADMIN = "admin-token-" + "z" * 20
ALERTS = ("DatabaseSlowQuery", "ApiLatencyP95High")
SHORT = {
    "DatabaseSlowQuery": {"window": "5s"},
    "ApiLatencyP95High": {"window": "5s", "for": "1s", "keep_firing_for": "0"},
}


def short_rules(directory: Path) -> Path:
    """The shipped rules for the two alerts under test, with test-sized windows."""
    return rules_file(directory, SHORT)


@contextlib.asynccontextmanager
async def fault(client: httpx.AsyncClient, database_url: str) -> AsyncIterator[None]:
    """The listings table held 1.1 s at a time, with a few listings being created, until the
    block exits."""
    owner = await register_and_login(client)
    async with (
        table_held(database_url, hold=lambda _: FAULT_SECONDS),
        in_background(*(writer(client, owner["headers"]) for _ in range(3))),
    ):
        yield


async def fires_then_resolves(
    receiver: Receiver, client: httpx.AsyncClient, *, database_url: str
) -> None:
    async with fault(client, database_url):
        for name in ALERTS:
            await eventually(
                partial(receiver.seen, name, "firing"), seconds=30, what=f"{name} firing"
            )
        admin = {"Authorization": f"Bearer {ADMIN}"}
        active = (await client.get("/alerts", headers=admin)).json()["alerts"]
        routes = {a["labels"].get("route") for a in active if a["alertname"] == "ApiLatencyP95High"}
        assert WRITE_ROUTE in routes
    for name in ALERTS:
        await eventually(
            partial(receiver.seen, name, "resolved"), seconds=30, what=f"{name} resolved"
        )
    # The page for the writes that waited (the sign-up before the fault is a route apart).
    latency = next(
        body
        for body in receiver.bodies
        if body["status"] == "firing"
        and body["groupLabels"]["alertname"] == "ApiLatencyP95High"
        and any(a["labels"].get("route") == WRITE_ROUTE for a in body["alerts"])
    )
    assert latency["version"] == "4"
    alert = next(a for a in latency["alerts"] if a["labels"]["route"] == WRITE_ROUTE)
    assert alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"].startswith("p95 ")


@pytest.mark.prometheus
@pytest.mark.postgres
@pytest.mark.redis
async def test_prometheus_source_end_to_end(shared_environ: dict[str, str], tmp_path: Path) -> None:
    rules = short_rules(tmp_path)
    # The API is told about Prometheus, so it leaves evaluation to the separate engine.
    api_environ = {**shared_environ, "ADMIN_TOKEN": ADMIN, "PROMETHEUS_URL": "http://127.0.0.1:9"}
    async with webhook_receiver() as receiver, served_api(api_environ) as api:
        with running_prometheus({"api": [api.target]}) as prometheus:
            settings = Settings.from_env(
                {
                    **shared_environ,
                    "PROMETHEUS_URL": prometheus.url,
                    "ALERT_WEBHOOK_URL": receiver.url,
                    "ALERT_RULES_PATH": str(rules),
                }
            )
            store = open_store(settings.alerts)
            monitor = Monitor.build(
                settings.alerts, store=store, metrics=Catalogue(CollectorRegistry()), job="alerts"
            )
            await monitor.start(immediately=True)
            try:
                await fires_then_resolves(
                    receiver, api.client, database_url=shared_environ["DATABASE_URL"]
                )
            finally:
                await monitor.stop()
                await store.dispose()
            failures = monitor.metrics.registry.get_sample_value(
                "dynoscope_rule_evaluation_failures_total", {"rule": "DatabaseSlowQuery"}
            )
            assert failures == 0


async def test_embedded_local_source_end_to_end(
    sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    async with webhook_receiver() as receiver:
        environ = {
            **sqlite_environ,
            "ADMIN_TOKEN": ADMIN,
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_RULES_PATH": str(short_rules(tmp_path)),
        }
        async with served_api(environ) as api:
            monitor = engine_state(api.app).monitor
            assert isinstance(monitor, Monitor) and monitor.source.name == "local"
            await fires_then_resolves(
                receiver, api.client, database_url=sqlite_environ["DATABASE_URL"]
            )
