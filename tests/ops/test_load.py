"""``dynoscope load`` against a real served API: its counts are the server's counts.

Each run is short (2-3 s, a few users with little think time) so the whole file stays fast;
the server's own ``http_server_request_duration_seconds_count`` is read from ``/metrics``
before and after, by route, and must match what the load generator says it sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.migrate import upgrade
from api.seed import seed
from api.settings import Settings
from ops.load import LoadError, LoadOptions, run_load
from ops.load_stats import percentile
from tests.support.cli import run_cli
from tests.support.stack import Running, free_port, served_app, serving

ROUTES = {
    "health": ("GET", "/healthz"),
    "browse": ("GET", "/properties"),
    "view": ("GET", "/properties/{property_id}"),
    "login": ("POST", "/auth/login"),
    "refresh": ("POST", "/auth/refresh"),
    "register": ("POST", "/auth/register"),
    "create": ("POST", "/properties"),
    "update": ("PATCH", "/properties/{property_id}"),
}


def quick(url: str, **change: Any) -> LoadOptions:
    """A short run: 2.5 s of 4 users with little think time."""
    options = LoadOptions(url=url, users=4, seconds=2.5, think=(0.02, 0.08), seed=11)
    return replace(options, **change)


async def served_count(client: httpx.AsyncClient) -> Counter[tuple[str, str, str]]:
    """Requests the server counted, by (method, route, status code)."""
    text = (await client.get("/metrics")).text
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_server_request_duration_seconds_count":
                labels = sample.labels
                key = (labels["method"], labels["route"], labels["status_code"])
                counts[key] += int(sample.value)
    return counts


@pytest.fixture
async def api(environ: dict[str, str]) -> AsyncIterator[Running]:
    async with served_app(environ) as running:
        await seed(running.services.sessions, properties=60, demo_password="demo-password-1")
        yield running


async def test_a_short_load_sends_what_the_server_counts(api: Running) -> None:
    before = await served_count(api.client)
    summary = await run_load(quick(str(api.client.base_url)))
    served = await served_count(api.client) - before

    assert summary.total.errors == 0, summary.as_dict()
    assert summary.total.answered == summary.total.requests == sum(served.values())
    assert {"health", "browse", "view", "login", "register"} <= set(summary.operations)
    for name, op in summary.operations.items():
        method, route = ROUTES[name]
        counted = sum(n for (m, r, _), n in served.items() if (m, r) == (method, route))
        assert op.requests == counted, name
        assert op.p50_ms <= op.p95_ms <= op.p99_ms
    # A read-heavy mix: reads are most of the traffic, as the model says.
    reads = summary.operations["browse"].requests + summary.operations["view"].requests
    assert reads / summary.total.requests > 0.6
    assert summary.total.per_second == pytest.approx(summary.total.requests / summary.seconds)


async def test_writes_need_a_user_allowed_to_write_and_are_skipped_without_one(
    api: Running,
) -> None:
    options = quick(
        str(api.client.base_url),
        email="nobody@example.com",
        password="wrong-password",
        mix={"browse": 1, "create": 3},
        # Long enough for the first sign-in's password check to answer on a busy machine.
        seconds=6.0,
    )
    summary = await run_load(options)

    login = summary.operations["login"]
    assert login.errors_by_status == {"401": login.requests} and login.requests >= 1
    assert summary.operations["create"].skipped > 0
    assert "create" not in {name for name, op in summary.operations.items() if op.requests}
    assert summary.notes == (
        "writes skipped: logging in as nobody@example.com answered 401; give --email and"
        " --password of a user allowed to write",
    )
    assert summary.total.errors_by_status == {"401": login.requests}


async def test_a_server_that_stops_mid_run_shows_as_connection_errors(
    sqlite_environ: dict[str, str],
) -> None:
    app = create_app(Settings.from_env(sqlite_environ))
    port = free_port()
    options = quick(f"http://127.0.0.1:{port}", seconds=3.0)
    async with serving(app, port):
        await upgrade(app.state.services.engine)
        run = asyncio.create_task(run_load(options))
        await asyncio.sleep(1.0)
    summary = await run

    assert summary.total.answered > 0
    assert summary.total.errors_by_kind.get("connection", 0) > 0, summary.as_dict()
    assert summary.total.requests == summary.total.answered + summary.total.errors_by_kind[
        "connection"
    ] + summary.total.errors_by_kind.get("timeout", 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"users": -1}, "users must be at least 1"),
        ({"seconds": 0}, "duration must be more than 0 s"),
        ({"url": "127.0.0.1:80"}, "url must look like http://host:port"),
        ({"think": (2.0, 1.0)}, "think time must be MIN-MAX"),
        ({"mix": {"browse": 1, "buy": 1}}, "unknown operation(s) in mix: buy"),
        ({"email": "a@example.com"}, "give both --email and --password"),
    ],
)
async def test_bad_options_are_refused_before_anything_is_sent(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(LoadError, match=re.escape(message)):
        await run_load(replace(quick("http://127.0.0.1:9"), **change))


async def test_an_unreachable_url_is_a_load_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoadError, match=f"cannot reach {url}: ConnectError"):
        await run_load(quick(url))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert [percentile(values, q) for q in (0.5, 0.95, 0.99, 1.0)] == [50, 95, 99, 100]


async def dynoscope(*args: str, tmp_path: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "JWT"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/cli.db"
    # A production host without the service's secrets may still run a load elsewhere.
    env["DYNOSCOPE_ENV"] = "production"
    return await run_cli("load", *args, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "-3"], "dynoscope load: users must be at least 1"),
        (["--duration", "0"], "dynoscope load: duration must be more than 0 s"),
        (["--duration", "soon"], "invalid duration 'soon'"),
        (["--url", "http://127.0.0.1:1"], "dynoscope load: cannot reach http://127.0.0.1:1"),
    ],
)
async def test_the_command_says_what_is_wrong_without_a_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    code, out, err = await dynoscope("--url", "http://127.0.0.1:9", *args, tmp_path=tmp_path)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and out == ""


async def test_the_command_prints_a_json_summary(
    sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    async with served_app(sqlite_environ) as running:
        await seed(running.services.sessions, properties=20, demo_password="demo-password-1")
        url = str(running.client.base_url)
        code, out, err = await dynoscope(
            *("--url", url, "--users", "3", "--duration", "2s", "--think", "0.05-0.1"),
            *("--mix", "browse=7,view=3", "--seed", "3", "--json", "--progress"),
            tmp_path=tmp_path,
        )
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary) == {"url", "seconds", "users", "total", "operations", "notes"}
    assert set(summary["total"]) == {
        *("requests", "answered", "per_second", "p50_ms", "p95_ms", "p99_ms"),
        *("statuses", "errors_by_status", "errors_by_kind", "skipped"),
    }
    assert summary["users"] == 3 and summary["total"]["requests"] > 5, summary
    assert set(summary["operations"]) <= {"health", "browse", "view"}
    assert "requests" in err and "/s" in err, err  # the progress line


async def test_a_target_rate_caps_the_whole_run(sqlite_environ: dict[str, str]) -> None:
    async with served_app(sqlite_environ) as running:
        await seed(running.services.sessions, properties=20, demo_password="demo-password-1")
        options = quick(
            str(running.client.base_url),
            users=8,
            seconds=2.0,
            think=(0.0, 0.0),
            rate=20.0,
            mix={"browse": 1, "view": 1},
        )
        summary = await run_load(options)
    sent = summary.total.requests - summary.operations["health"].requests
    # Eight users with no think time would send hundreds; the pacer lets 20 a second through.
    assert 30 <= sent <= 20 * summary.seconds + 1, summary.as_dict()
