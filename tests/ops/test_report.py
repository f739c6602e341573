"""``dynoscope report`` reads a real Prometheus scraping a served API under ``dynoscope load``.

Its numbers must agree with the API's own counters (read from ``/metrics`` before and after)
within what Prometheus's rate extrapolation allows, its capacity arithmetic with the same
sums done here, and it must say "no data" without traffic and fail without Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.seed import seed
from ops.load import LoadOptions, run_load
from ops.report import Report, format_report, read_report_from
from ops.scorecard import (
    CACHE_HIT_RATIO,
    FAIL,
    INFO,
    NO_DATA,
    P95_LATENCY,
    PASS,
    WARN,
    capacity,
    format_value,
    judge,
)
from tests.alerts.harness import ERROR_ROUTE, Served, eventually, served_api
from tests.support.cli import run_cli
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.stack import free_port

LOAD = LoadOptions(url="", users=4, seconds=3.0, think=(0.02, 0.08), seed=5)


async def own_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """The API's own totals: requests, 5xx answers, request seconds, database statements."""
    totals = dict.fromkeys(("requests", "errors", "seconds", "queries", "cpu"), 0.0)
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_server_request_duration_seconds_count":
                totals["requests"] += sample.value
                if sample.labels["status_code"].startswith("5"):
                    totals["errors"] += sample.value
            elif sample.name == "http_server_request_duration_seconds_sum":
                totals["seconds"] += sample.value
            elif sample.name == "db_client_operation_duration_seconds_count":
                totals["queries"] += sample.value
            elif sample.name == "process_cpu_seconds_total":
                totals["cpu"] += sample.value
    return totals


def scalar(prometheus: Prometheus, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else math.nan  # type: ignore[index]


async def failing(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """A steady trickle of 500s next to the load, for a known error ratio; it ends between
    requests (a cancelled one could still be counted after the test read the counters)."""
    while not stop.is_set():
        await client.get(ERROR_ROUTE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)


@contextlib.asynccontextmanager
async def api_under_prometheus(environ: dict[str, str]) -> AsyncIterator[tuple[Served, Prometheus]]:
    async with served_api(environ) as api:
        await seed(api.app.state.services.sessions, properties=40, demo_password="demo-pass-1")
        with running_prometheus({"api": [api.target]}) as prometheus:
            yield api, prometheus


def by_check(report: Report) -> dict[str, float | None]:
    return {each.check: each.value for each in report.lines if each.instance is None}


@pytest.mark.prometheus
async def test_the_report_agrees_with_the_apis_own_counters(
    sqlite_environ: dict[str, str],
) -> None:
    async with api_under_prometheus(sqlite_environ) as (api, prometheus):
        url = str(api.client.base_url)
        # A first, short run makes every series exist before the window starts, so the
        # window's rates are not cut short by series Prometheus never saw at zero.
        await run_load(LoadOptions(url=url, users=2, seconds=1.0, think=(0.05, 0.1)))
        await api.client.get(ERROR_ROUTE)
        before = await own_counters(api.client)
        await eventually(
            lambda: (
                scalar(prometheus, "sum(http_server_request_duration_seconds_count)")
                == before["requests"]
            ),
            seconds=10,
            what="Prometheus has scraped the warm-up",
        )
        started = time.time()
        stop = asyncio.Event()
        errors = asyncio.create_task(failing(api.client, stop))
        try:
            summary = await run_load(replace(LOAD, url=url))
        finally:
            stop.set()
            await errors
        after = await own_counters(api.client)
        await eventually(
            lambda: (
                scalar(prometheus, "sum(http_server_request_duration_seconds_count)")
                == after["requests"]
            ),
            seconds=10,
            what="Prometheus has scraped the whole load",
        )
        await asyncio.sleep(1.5)  # one more, flat scrape: the window ends after the load
        since = timedelta(seconds=math.ceil(time.time() - started) + 1)
        report = await read_report_from(prometheus.url, since=since)

        served = {key: after[key] - before[key] for key in after}
        assert summary.total.requests >= 20 and served["errors"] >= 10, (summary, served)
        seen = by_check(report)
        window = since.total_seconds()
        print(f"report: {report.as_dict()}\nserved in the window: {served}")
        # rate() extrapolates the samples it has to the whole window: up to one scrape
        # interval at each end, a few seconds out of a window of about ten. Ratios of two
        # rates share that factor, so they are held closer.
        assert seen["requests"] == pytest.approx(served["requests"] / window, rel=0.35)
        assert seen["error ratio (5xx)"] == pytest.approx(
            served["errors"] / served["requests"], rel=0.2
        )
        assert seen["queries per request"] == pytest.approx(
            served["queries"] / served["requests"], rel=0.2
        )
        assert seen["database queries"] == pytest.approx(served["queries"] / window, rel=0.35)

        # Capacity: Little's law per instance, checked against Prometheus's own sums.
        plan = report.capacity
        (load,) = plan.instances
        assert load.instance == api.target
        at = report.at.timestamp()
        rate = _at(prometheus, "sum(rate(http_server_request_duration_seconds_count", since, at)
        busy = _at(prometheus, "sum(rate(http_server_request_duration_seconds_sum", since, at)
        assert load.requests_per_second == pytest.approx(rate)
        assert load.mean_latency_seconds == pytest.approx(busy / rate)
        assert load.concurrency == pytest.approx(rate * (busy / rate))
        assert load.headroom == pytest.approx(100 - load.concurrency)
        assert plan.instances_needed == max(1, math.ceil(load.concurrency / 100))
        # The mean latency is the API's own, as far as its counters go.
        own_mean = served["seconds"] / served["requests"]
        assert load.mean_latency_seconds == pytest.approx(own_mean, rel=0.35)
        little = next(each for each in report.lines if each.check == "instances needed")
        assert little.verdict == PASS

        # The CPU model: this process's CPU time (the API serves in the test's process, so
        # the load generator's CPU counts too) over its one usable core.
        (instance,) = report.model.instances
        cpu = _at(prometheus, "sum(rate(process_cpu_seconds_total", since, at)
        assert instance.cores == 1.0
        assert instance.utilisation == pytest.approx(cpu)
        assert instance.cpu_per_request_seconds == pytest.approx(cpu / rate)
        assert instance.cpu_per_request_seconds == pytest.approx(
            served["cpu"] / served["requests"], rel=0.35
        )
        assert instance.saturation_rate == pytest.approx(rate / cpu)
        assert instance.rate_at_target_p95 is not None
        assert 0 < instance.rate_at_target_p95 < instance.saturation_rate
        assert report.model.instances_needed == max(1, math.ceil(cpu / 0.7))
        assert report.lines[-1].check == "instances needed (CPU)"
        text = format_report(report)
        assert f"{api.target}: 1 core(s), " in text and "p95 200 ms at ~" in text


def _at(prometheus: Prometheus, prefix: str, since: timedelta, at: float) -> float:
    expr = f'{prefix}{{job="api"}}[{int(since.total_seconds())}s]))'
    response = httpx.get(
        f"{prometheus.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=5
    )
    return float(response.json()["data"]["result"][0]["value"][1])


async def dynoscope(*args: str) -> tuple[int, str, str]:
    return await run_cli("report", *args, env=_bare_environ())


@pytest.mark.prometheus
async def test_without_traffic_every_line_says_no_data_and_the_json_keeps_its_shape() -> None:
    silent = f"127.0.0.1:{free_port()}"  # a target nobody serves: Prometheus up, no data
    with running_prometheus({"api": [silent]}) as prometheus:
        code, out, err = await dynoscope("--prometheus", prometheus.url, "--since", "5m")
        assert code == 0, err
        assert "no data" in out and "Scaling health over the last 5m" in out
        code, out, err = await dynoscope("--prometheus", prometheus.url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"since", "at", "origin", "lines", "capacity", "model"}
    assert report["model"] == {
        "target_utilisation": 0.7,
        "instances": [],
        "instances_needed": None,
    }
    assert report["origin"] == f"Prometheus at {prometheus.url}"
    assert report["since"] == "1h"
    assert set(report["capacity"]) == {
        "planned_per_instance",
        "instances",
        "total_concurrency",
        "instances_needed",
    }
    checks = [line["check"] for line in report["lines"]]
    assert checks == [
        "requests",
        "latency p95",
        "error ratio (5xx)",
        "cache hit ratio",
        "database queries",
        "queries per request",
        "memory growth",
        "instances needed",
        "CPU utilisation",
        "saturation rate",
        "instances needed (CPU)",
    ]
    for line in report["lines"]:
        assert set(line) == {"check", "value", "unit", "target", "verdict", "instance"}
        assert line["value"] is None and line["verdict"] == NO_DATA, line
    # Each value in the unit its line names: ratios are ratios (0 to 1), not "%".
    units = {line["check"]: line["unit"] for line in report["lines"]}
    assert units["error ratio (5xx)"] == units["cache hit ratio"] == "ratio"
    assert "%" not in units.values()


async def test_an_unreachable_prometheus_is_an_error_with_a_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await dynoscope("--prometheus", url)
    assert code == 1 and out == ""
    assert f"dynoscope report: Prometheus at {url} did not answer: prometheus: unreachable" in err
    assert "Traceback" not in err


async def test_without_any_prometheus_the_command_says_how_to_name_one() -> None:
    code, _, err = await dynoscope()
    assert code == 2 and "give --prometheus" in err and "--url" in err


# --- from an API's own engine (the embedded default) ---------------------------------------

ADMIN_TOKEN = "report-admin-token-" + "r" * 12


async def test_the_report_of_an_embedded_api_agrees_with_its_own_counters(
    sqlite_environ: dict[str, str],
) -> None:
    """No Prometheus: the engine inside the API answers from its sampled window."""
    async with served_api({**sqlite_environ, "ADMIN_TOKEN": ADMIN_TOKEN}) as api:
        await seed(api.app.state.services.sessions, properties=40, demo_password="demo-pass-1")
        url = str(api.client.base_url).rstrip("/")
        stop = asyncio.Event()
        errors = asyncio.create_task(failing(api.client, stop))
        try:
            await run_load(replace(LOAD, url=url))
        finally:
            stop.set()
            await errors
        code, out, err = await run_cli(
            "report", "--url", url, "--since", "10m", "--json",
            env={**_bare_environ(), "ADMIN_TOKEN": ADMIN_TOKEN},
        )  # fmt: skip
        served = await own_counters(api.client)
    assert code == 0, err
    report = json.loads(out)
    assert report["origin"].startswith(f"the engine of {url}, ")  # less than 10m sampled
    assert report["origin"].endswith(" sampled")
    seen = {line["check"]: line["value"] for line in report["lines"] if not line["instance"]}
    # Ratios of the window's increases: the window holds every request since the start
    # (but the few answered after its last snapshot: this command's own, the scrape).
    assert seen["error ratio (5xx)"] == pytest.approx(
        served["errors"] / served["requests"], rel=0.05
    )
    assert seen["queries per request"] == pytest.approx(
        served["queries"] / served["requests"], rel=0.05
    )
    (load,) = report["capacity"]["instances"]
    assert load["mean_latency_seconds"] == pytest.approx(
        served["seconds"] / served["requests"], rel=0.1
    )
    assert report["capacity"]["instances_needed"] == 1


async def test_the_engines_window_says_what_it_cannot_answer(
    sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with served_api({**sqlite_environ, "ADMIN_TOKEN": ADMIN_TOKEN}) as api:
        url = str(api.client.base_url).rstrip("/")
        cases = [
            ({"signal": "http_latency_p95_secs"}, "queries.0.signal"),
            ({"signal": "cache_hit_ratio", "window": "soon"}, "queries.0.window"),
            ({"signal": "cache_hit_ratio", "by": ["colour"]}, "has no label 'colour'"),
            (
                {"signal": "cache_hit_ratio", "params": {"min_requests_per_second": -1}},
                "params.min_requests_per_second",
            ),
        ]
        for ask, named in cases:
            response = await api.client.post(
                "/alerts/query", json={"queries": [ask]}, headers=admin
            )
            assert response.status_code == 422, (ask, response.text)
            assert named in response.text, (ask, response.text)
        refused = await api.client.post("/alerts/query", json={"queries": [ask]})
        assert refused.status_code == 401
        code, _, err = await dynoscope("--url", url)  # no ADMIN_TOKEN in its environment
        assert code == 1 and "set ADMIN_TOKEN" in err
        code, _, err = await run_cli(
            "report", "--url", url, env={**_bare_environ(), "ADMIN_TOKEN": "wrong-" + "w" * 20}
        )
        assert code == 1 and f"{url} refused the admin token" in err, err
    # Without ADMIN_TOKEN the route does not exist; with Prometheus the engine is elsewhere.
    async with served_api(sqlite_environ) as api:
        url = str(api.client.base_url).rstrip("/")
        code, _, err = await run_cli(
            "report", "--url", url, env={**_bare_environ(), "ADMIN_TOKEN": ADMIN_TOKEN}
        )
        assert code == 1 and "/alerts/query does not exist" in err, err
    elsewhere = {
        **sqlite_environ,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "ALERT_STORE_URL": f"sqlite:///{tmp_path}/alerts.db",
    }
    async with served_api(elsewhere) as api:
        asked = {"queries": [{"signal": "heartbeat"}]}
        response = await api.client.post("/alerts/query", json=asked, headers=admin)
        assert response.status_code == 409
        assert "ask its Prometheus" in response.json()["detail"]
    assert "Traceback" not in err


def _bare_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "PROMETHEUS"))}


@pytest.mark.parametrize(
    ("value", "target", "verdict"),
    [
        (0.15, P95_LATENCY, PASS),
        (0.2, P95_LATENCY, PASS),
        (0.3, P95_LATENCY, WARN),
        (0.5, P95_LATENCY, WARN),
        (0.51, P95_LATENCY, FAIL),
        (0.8, CACHE_HIT_RATIO, PASS),
        (0.65, CACHE_HIT_RATIO, WARN),
        (0.5, CACHE_HIT_RATIO, FAIL),
        (3.0, None, INFO),
        (math.nan, P95_LATENCY, NO_DATA),
        (None, P95_LATENCY, NO_DATA),
    ],
)
def test_verdicts_follow_the_targets(value: float | None, target: object, verdict: str) -> None:
    assert judge(value, target) == verdict  # type: ignore[arg-type]


def test_capacity_is_littles_law_against_the_plan() -> None:
    plan = capacity(
        rates={"a:1": 400.0, "b:1": 500.0, "c:1": 0.0},
        busy={"a:1": 60.0, "b:1": 110.0},
    )
    a, b, c = plan.instances
    assert (a.mean_latency_seconds, a.concurrency, a.headroom) == (0.15, 60.0, 40.0)
    assert (b.concurrency, b.headroom) == (110.0, -10.0)
    assert (c.mean_latency_seconds, c.concurrency) == (None, 0.0)
    assert plan.total_concurrency == 170.0 and plan.instances_needed == 2
    assert capacity(rates={"a:1": 1.0}, busy={"a:1": 0.01}).instances_needed == 1
    assert capacity(rates={}, busy={}).instances_needed is None


def test_values_are_shown_in_their_units() -> None:
    assert format_value(0.0123, "s") == "12.3 ms"
    assert format_value(0.7, "ratio") == "70 %"
    assert format_value(52428800, "B/h") == "50.0 MiB/h"
    assert format_value(None, "s") == "no data"
