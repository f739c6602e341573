"""Every panel query, every variable and every exported rule expression, run on a real
Prometheus scraping the served API while it has traffic.

The API runs on PostgreSQL and Redis (so the cache has lookups); the alert engine runs on its
own as in production, on the Prometheus source, with the shipped rules evaluated every second
(so the Watchdog fires and is delivered to a real webhook receiver: the engine's notification
and alert series exist). Prometheus scrapes the API as job ``api`` and the engine's metrics
port as job ``alerts`` every second, with the exported rule file loaded.
Traffic: cached lists (hits and misses), 404s, 500s, waits of 0 to 450 ms, one statement
slower than a second, and one burst past ``MAX_IN_FLIGHT`` so admission control sheds.

Queries that may come back empty here, and why (any other must return data; these
may too, e.g. a store call that timed out on a loaded machine):
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from alerts.engine.monitor import Monitor, open_store
from alerts.rules.export import export_yaml
from alerts.rules.loader import DEFAULT_RULES, load_rules
from alerts.store.migrate import upgrade
from api.settings import Settings
from dashboards.promql import metric_names
from exporters.server import MetricsServer
from instrumentation.catalogue import Catalogue
from tests.alerts.harness import (
    ERROR_ROUTE,
    eventually,
    in_background,
    served_api,
    webhook_receiver,
)
from tests.dashboards.support import catalogue_names, models, panel_queries, resolved
from tests.support.locks import table_held, writer
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.stack import free_port
from tests.support.users import listing, register_and_login

pytestmark = [pytest.mark.prometheus, pytest.mark.postgres, pytest.mark.redis]

DOCS = Path(__file__).parents[2] / "docs" / "metrics.md"
MAX_IN_FLIGHT = 6

EMPTY_PANELS = {
    ("scaling-health", "Memory growth per instance", "A"): "instances younger than the 5 m "
    "window are left out (as the leak rule does), and this one is seconds old",
    ("scaling-health", "Hours to 80 % utilisation", "A"): "absent while the fleet's "
    "utilisation does not rise, and the traffic here is steady",
}
EMPTY_RECORDS = {
    # by signal: a record is named level:signal:window[:params]
    "memory_growth_bytes_per_hour": "the rule ignores instances up for less than an hour",
    "capacity_hours_to_saturation": "absent while the fleet's utilisation does not rise",
}
__doc__ += "".join(
    f"\n- {' / '.join(key) if isinstance(key, tuple) else f'rule record of {key}'}: {why}"
    for key, why in [*EMPTY_PANELS.items(), *EMPTY_RECORDS.items()]
)


def fast_rules(directory: Path) -> Path:
    """The shipped rules, every group evaluated each second (the Watchdog fires at once)."""
    shipped = yaml.safe_load(DEFAULT_RULES.read_text())
    for group in shipped["groups"]:
        group["interval"] = "1s"
    path = directory / "fast.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


@contextlib.asynccontextmanager
async def traffic(client: httpx.AsyncClient, database_url: str) -> AsyncIterator[None]:
    """Lists (hits and misses), 404s and 500s; listings created while another client holds the
    table 0 to 450 ms at a time (latencies in several buckets), once for 1.1 s (a slow
    query); and a burst of writers waiting on the held table, more than admission allows."""

    async def lists() -> None:
        step = 0
        while True:
            step += 1
            city = f"city{step % 3}" if step % 4 else f"new{step}"  # repeats hit, new miss
            await client.get("/properties", params={"city": city})
            await client.get("/properties/999999")
            if step % 5 == 0:
                await client.get(ERROR_ROUTE)
            if step % 2 == 0:
                # a wrong password now and then (soon refused by the rate limits: both count),
                # often enough that the seconds of data Prometheus holds reach the guard of
                # 0.2 attempts/s over 5 m
                await client.post(
                    "/auth/login", json={"email": "x@example.com", "password": "x" * 12}
                )
            await asyncio.sleep(0.005)

    def hold(step: int) -> float:
        return 1.1 if step == 1 else (step * 37) % 450 / 1000

    owner = await register_and_login(client)
    headers = owner["headers"]
    async with (
        table_held(database_url, hold=hold),
        in_background(lists(), lists(), writer(client, headers), writer(client, headers)),
    ):
        burst = [
            client.post("/properties", json=listing(), headers=headers)
            for _ in range(3 * MAX_IN_FLIGHT)
        ]
        codes = [response.status_code for response in await asyncio.gather(*burst)]
        assert 503 in codes, "admission control shed nothing"
        yield


def query(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def check_panels(prometheus: Prometheus, known: set[str]) -> list[str]:
    problems = []
    for item in panel_queries():
        expr = resolved(item.expr)
        unknown = {name for name in metric_names(expr) if name not in known}
        if unknown:
            problems.append(f"{item.dashboard}/{item.panel}: not in the catalogue {unknown}")
        empty = not query(prometheus, expr)
        allowed = (item.dashboard, item.panel, item.ref) in EMPTY_PANELS
        if empty and not allowed:
            problems.append(f"{item.dashboard}/{item.panel}/{item.ref}: no data for {expr}")
    return problems


def check_variables(prometheus: Prometheus) -> list[str]:
    problems = []
    for name, model in models().items():
        for variable in model["templating"]["list"]:
            if variable["type"] != "query":
                continue
            selector, label = variable["query"].removeprefix("label_values(")[:-1].rsplit(", ", 1)
            series = query(prometheus, resolved(selector))
            if not any(label in s["metric"] for s in series):
                problems.append(f"{name}: variable {variable['name']} lists nothing")
    return problems


def check_rules(prometheus: Prometheus, exported: dict[str, Any], known: set[str]) -> list[str]:
    problems = []
    records = {r["record"] for g in exported["groups"] for r in g["rules"] if "record" in r}
    for group in exported["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule["alert"]
            unknown = {m for m in metric_names(rule["expr"]) if m not in known | records}
            if unknown:
                problems.append(f"{name}: not in the catalogue {unknown}")
            empty = not query(prometheus, rule["expr"])  # also: Prometheus accepts it
            if "record" in rule and empty and name.split(":")[1] not in EMPTY_RECORDS:
                problems.append(f"{name}: no data for {rule['expr']}")
    return problems


async def test_every_query_and_rule_answers_on_real_prometheus(
    shared_environ: dict[str, str], tmp_path: Path
) -> None:
    exported_text = export_yaml(load_rules([DEFAULT_RULES]))
    (tmp_path / "rules.yml").write_text(exported_text)
    known = catalogue_names(DOCS)
    engine_port = free_port()
    # The API is told about Prometheus, so the engine runs on its own as in production.
    api_environ = {
        **shared_environ,
        "PROMETHEUS_URL": "http://127.0.0.1:9",
        "MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
    }
    async with webhook_receiver() as receiver, served_api(api_environ) as api:
        targets = {"api": [api.target], "alerts": [f"127.0.0.1:{engine_port}"]}
        with running_prometheus(targets, rule_files=[tmp_path / "rules.yml"]) as prometheus:
            settings = Settings.from_env(
                {
                    **shared_environ,
                    "PROMETHEUS_URL": prometheus.url,
                    "ALERT_WEBHOOK_URL": receiver.url,
                    "ALERT_RULES_PATH": str(fast_rules(tmp_path)),
                    "ALERT_STORE_URL": shared_environ["DATABASE_URL"],
                }
            )
            async with (
                engine(settings, port=engine_port),
                traffic(api.client, shared_environ["DATABASE_URL"]),
            ):
                await eventually(
                    lambda: bool(receiver.bodies), seconds=30, what="Watchdog delivered"
                )
                await eventually(
                    lambda: len(query(prometheus, "up == 1")) == 2, seconds=20, what="scrapes"
                )
                # rate() needs several scrapes of steady traffic: ask again until every query
                # answers, or until the deadline, then report what still does not.
                deadline = time.monotonic() + 30
                while True:
                    problems = await asyncio.to_thread(
                        lambda: [
                            *check_panels(prometheus, known),
                            *check_variables(prometheus),
                            *check_rules(prometheus, yaml.safe_load(exported_text), known),
                        ]
                    )
                    if not problems or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(1)
    assert not problems, "\n".join(problems)


@contextlib.asynccontextmanager
async def engine(settings: Settings, *, port: int) -> AsyncIterator[None]:
    """The alert engine on its own (as ``dynoscope alerts run``), metrics served on ``port``."""
    registry = CollectorRegistry()
    store = open_store(settings.alerts)
    await upgrade(store)
    monitor = Monitor.build(
        settings.alerts, store=store, metrics=Catalogue(registry), instance="engine-1", job="alerts"
    )
    server = MetricsServer(registry, host="127.0.0.1", port=port, token=None)
    assert server.start(), f"port {port} taken"
    await monitor.start(immediately=True)
    try:
        yield
    finally:
        await monitor.stop()
        server.stop()
        await store.dispose()
