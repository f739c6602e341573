"""Fault injection: off by default, admin-only, bad input named; memory_leak for real; the CLI
against a served API over a socket."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from api.faults.commands import load_fault_commands
from api.settings import Settings, SettingsError
from tests.instrumentation.support import parse_text
from tests.support.faults import ADMIN, TOKEN, faults_on
from tests.support.stack import Running, running_app, served_app
from tests.support.users import listing, register_and_login

MB = 1024 * 1024


@pytest.fixture
async def api(sqlite_environ: dict[str, str]) -> AsyncIterator[Running]:
    async with running_app(faults_on(sqlite_environ)) as running:
        yield running


def _gauge(scrape: str, fault: str) -> float:
    family = parse_text(scrape)["dynoscope_fault_active"]
    return next(s.value for s in family.samples if s.labels["fault"] == fault)


def _rss(scrape: str) -> float:
    return float(parse_text(scrape)["process_resident_memory_bytes"].samples[0].value)


# --- off by default, and the settings that guard it ------------------------------------


async def test_routes_do_not_exist_unless_enabled(sqlite_environ: dict[str, str]) -> None:
    environ = {**sqlite_environ, "ADMIN_TOKEN": TOKEN}
    async with running_app(environ) as app:
        assert (await app.client.get("/admin/faults", headers=ADMIN)).status_code == 404
        put = await app.client.put("/admin/faults/memory_leak", headers=ADMIN, json={})
        assert put.status_code == 404
        assert put.json()["error"] == "not_found"
        assert "dynoscope_fault_active{" not in (await app.client.get("/metrics")).text


def test_enabling_faults_needs_an_admin_token(sqlite_environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"DYNOSCOPE_FAULTS_ENABLED: .*ADMIN_TOKEN"):
        Settings.from_env({**sqlite_environ, "DYNOSCOPE_FAULTS_ENABLED": "true"})


def test_production_refuses_faults_unless_explicitly_allowed(
    sqlite_environ: dict[str, str],
) -> None:
    production = faults_on(sqlite_environ, DYNOSCOPE_ENV="production")
    with pytest.raises(SettingsError, match="DYNOSCOPE_FAULTS_IN_PRODUCTION=true"):
        Settings.from_env(production)
    allowed = Settings.from_env({**production, "DYNOSCOPE_FAULTS_IN_PRODUCTION": "true"})
    assert allowed.faults_enabled


def test_a_bad_commands_file_names_file_fault_and_field(
    sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "faults.yml"
    path.write_text("redis_down:\n  on: redis-cli shutdown\n  off: [redis-server]\n")
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(faults_on(sqlite_environ, DYNOSCOPE_FAULT_COMMANDS=str(path)))
    message = str(raised.value)
    assert str(path) in message and "'redis_down'" in message and "'on'" in message
    path.write_text("memory_leak:\n  on: [true]\n  off: [true]\n")
    with pytest.raises(SettingsError, match="built into the service"):
        Settings.from_env(faults_on(sqlite_environ, DYNOSCOPE_FAULT_COMMANDS=str(path)))
    path.write_text("db_down:\n  on: [x]\n  off: [y]\n  timeout: 0\n")
    with pytest.raises(SettingsError, match="'timeout'"):
        Settings.from_env(faults_on(sqlite_environ, DYNOSCOPE_FAULT_COMMANDS=str(path)))


def test_the_documented_commands_file_is_valid(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "faults.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "faults.yml"
    path.write_text(example)
    commands = load_fault_commands(path)
    assert set(commands) == {"db_down", "redis_down", "instance_kill"}
    assert commands["redis_down"].off[-2:] == ("--daemonize", "yes")  # a string, not True
    assert commands["db_down"].timeout == 60


# --- the admin API -------------------------------------------------------------------------


async def test_no_token_is_401_and_a_wrong_one_403(api: Running) -> None:
    missing = await api.client.get("/admin/faults")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    wrong = await api.client.put(
        "/admin/faults/memory_leak", headers={"Authorization": "Bearer nope"}, json={}
    )
    assert wrong.status_code == 403
    assert (await api.client.delete("/admin/faults/memory_leak")).status_code == 401


async def test_every_fault_is_listed_off_and_in_the_gauge(api: Running) -> None:
    response = await api.client.get("/admin/faults", headers=ADMIN)
    assert response.status_code == 200
    faults = {f["name"]: f for f in response.json()["faults"]}
    assert set(faults) == {"db_slow", "memory_leak", "db_down", "redis_down", "instance_kill"}
    assert all(not f["active"] and f["since"] is None for f in faults.values())
    assert faults["memory_leak"]["available"]
    assert faults["db_slow"]["available"]  # SQLite's write lock
    assert "DYNOSCOPE_FAULT_COMMANDS" in faults["redis_down"]["reason"]
    scrape = (await api.client.get("/metrics")).text
    assert _gauge(scrape, "db_slow") == 0 and _gauge(scrape, "redis_down") == 0


async def test_bad_input_is_a_4xx_that_says_what(api: Running) -> None:
    unknown = await api.client.put("/admin/faults/cpu_burn", headers=ADMIN, json={})
    assert unknown.status_code == 404
    assert "cpu_burn" in unknown.json()["detail"]
    assert (await api.client.delete("/admin/faults/cpu_burn", headers=ADMIN)).status_code == 404

    cases = [
        ({"cap_mb": 0}, "body.cap_mb"),
        ({"rate_mb_per_min": "fast"}, "body.rate_mb_per_min"),
        ({"leak": 1}, "body.leak"),
    ]
    for params, field in cases:
        response = await api.client.put("/admin/faults/memory_leak", headers=ADMIN, json=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["field"] == field
        assert field in response.json()["detail"]
    listed = await api.client.put("/admin/faults/memory_leak", headers=ADMIN, json=[1])
    assert listed.status_code == 422
    malformed = await api.client.put(
        "/admin/faults/memory_leak",
        headers={**ADMIN, "Content-Type": "application/json"},
        content=b"{",
    )
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "body"


async def test_db_slow_on_sqlite_holds_the_real_write_lock(api: Running) -> None:
    """Readers never wait in WAL mode; a write waits for the lock, and counts as slow."""
    headers = (await register_and_login(api.client))["headers"]
    on = await api.client.put("/admin/faults/db_slow", headers=ADMIN, json={"hold": 1.5})
    assert on.status_code == 200, on.text
    assert on.json()["locks"] == 1 and on.json()["holding"]
    # Another connection cannot write while the fault holds the lock.
    other = sqlite3.connect(_database_file(api), timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.close()
    started = time.monotonic()
    assert (await api.client.get("/properties?city=nowhere")).status_code == 200
    assert time.monotonic() - started < 1.0
    created = await api.client.post("/properties", headers=headers, json=listing())
    took = time.monotonic() - started
    assert created.status_code == 201, created.text
    assert took >= 1.0, took  # it waited for the lock (what was left of 1.5 s)
    scrape = parse_text((await api.client.get("/metrics")).text)
    slow = scrape["db_client_slow_queries"].samples
    assert any(s.labels.get("table") == "properties" and s.value >= 1 for s in slow), slow
    off = await api.client.delete("/admin/faults/db_slow", headers=ADMIN)
    assert off.status_code == 200 and not off.json()["holding"]
    free = sqlite3.connect(_database_file(api), timeout=0)
    free.execute("BEGIN IMMEDIATE")  # released at once
    free.execute("ROLLBACK")
    free.close()


def _database_file(api: Running) -> str:
    database = make_url(api.app.state.settings.database_url).database
    assert database is not None
    return database


async def test_db_slow_needs_a_file_and_an_unconfigured_external_fault_says_so(
    sqlite_environ: dict[str, str],
) -> None:
    environ = faults_on({**sqlite_environ, "DATABASE_URL": "sqlite:///:memory:"})
    async with running_app(environ) as api:
        slow = await api.client.put("/admin/faults/db_slow", headers=ADMIN, json={"hold": 1})
        assert slow.status_code == 409
        assert slow.json() == {
            "error": "fault_unavailable",
            "detail": "db_slow needs a database file; DATABASE_URL is an in-memory SQLite",
        }
        down = await api.client.put("/admin/faults/redis_down", headers=ADMIN)
        assert down.status_code == 409
        assert "not configured" in down.json()["detail"]


# --- memory_leak -----------------------------------------------------------------------------


async def _held(api: Running) -> float:
    response = await api.client.get("/admin/faults", headers=ADMIN)
    (leak,) = [f for f in response.json()["faults"] if f["name"] == "memory_leak"]
    return float(leak["held_mb"])


async def test_memory_leak_grows_resident_memory_to_the_cap_and_off_frees_it(
    api: Running,
) -> None:
    cap = 200
    before = _rss((await api.client.get("/metrics")).text)
    on = await api.client.put(
        "/admin/faults/memory_leak",
        headers=ADMIN,
        json={"rate_mb_per_min": 24_000, "cap_mb": cap},  # 400 MB/s: the cap in half a second
    )
    assert on.status_code == 200
    assert on.json()["active"] and on.json()["params"] == {"rate_mb_per_min": 24_000, "cap_mb": cap}
    deadline = asyncio.get_running_loop().time() + 10
    while await _held(api) < cap:
        assert asyncio.get_running_loop().time() < deadline, "the leak never reached its cap"
        await asyncio.sleep(0.1)
    scrape = (await api.client.get("/metrics")).text
    leaking = _rss(scrape)
    assert _gauge(scrape, "memory_leak") == 1
    assert leaking - before >= 0.8 * cap * MB, (before, leaking)
    await asyncio.sleep(0.6)
    assert await _held(api) == cap  # the cap holds

    off = await api.client.delete("/admin/faults/memory_leak", headers=ADMIN)
    assert off.status_code == 200 and not off.json()["active"]
    scrape = (await api.client.get("/metrics")).text
    assert _gauge(scrape, "memory_leak") == 0
    # Tolerant: the allocator may keep a little, but most of it goes back to the system.
    assert leaking - _rss(scrape) >= 0.5 * cap * MB


async def test_switching_on_again_takes_the_new_params_and_shutdown_frees(
    sqlite_environ: dict[str, str],
) -> None:
    async with running_app(faults_on(sqlite_environ)) as app:
        url = "/admin/faults/memory_leak"
        await app.client.put(url, headers=ADMIN, json={"rate_mb_per_min": 6000, "cap_mb": 50})
        again = await app.client.put(url, headers=ADMIN, json={"cap_mb": 1})
        assert again.json()["params"] == {"rate_mb_per_min": 60.0, "cap_mb": 1}
        faults = app.app.state.faults
    assert not any(f["active"] for f in faults.listing())


# --- the command line, over a real socket ----------------------------------------------------


async def _cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "ADMIN"))}
    env["LOG_LEVEL"] = "WARNING"
    if token is not None:
        env["ADMIN_TOKEN"] = token
    # In a thread: the API answering it runs on this test's event loop.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dynoscope", "fault", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_lists_switches_on_and_off_without_showing_the_token(
    sqlite_environ: dict[str, str],
) -> None:
    async with served_app(faults_on(sqlite_environ)) as api:
        url = str(api.client.base_url)
        listed = await _cli("list", "--url", url)
        assert listed.returncode == 0, listed.stderr
        names = [line.split()[0] for line in listed.stdout.splitlines()]
        assert names == ["db_slow", "memory_leak", "db_down", "redis_down", "instance_kill"]
        assert "unavailable" not in listed.stdout.splitlines()[0]  # db_slow: SQLite's lock
        assert "unavailable: db_down is not configured" in listed.stdout

        on = await _cli(
            "on", "memory_leak", "--param", "cap_mb=2", "--param", "rate_mb_per_min=600",
            "--url", url,
        )  # fmt: skip
        assert on.returncode == 0, on.stderr
        assert on.stdout.startswith("memory_leak    on ")
        state: dict[str, Any] = (await api.client.get("/admin/faults", headers=ADMIN)).json()
        assert {"name": "memory_leak", "active": True}.items() <= state["faults"][1].items()

        bad = await _cli("on", "memory_leak", "--param", "cap_mb=-1", "--url", url)
        assert bad.returncode == 1
        assert "422" in bad.stderr and "body.cap_mb" in bad.stderr

        off = await _cli("off", "memory_leak", "--url", url)
        assert off.returncode == 0, off.stderr
        assert off.stdout.startswith("memory_leak    off")
        state = (await api.client.get("/admin/faults", headers=ADMIN)).json()
        assert not state["faults"][1]["active"]

        wrong = await _cli("list", "--url", url, token="not-the-token")
        assert wrong.returncode == 1 and "403" in wrong.stderr
        unset = await _cli("list", "--url", url, token=None)
        assert unset.returncode == 2 and "ADMIN_TOKEN" in unset.stderr
        for result in (listed, on, bad, off, wrong):
            assert TOKEN not in result.stdout + result.stderr


async def test_cli_says_when_the_api_has_no_fault_routes(sqlite_environ: dict[str, str]) -> None:
    async with served_app({**sqlite_environ, "ADMIN_TOKEN": TOKEN}) as api:
        result = await _cli("list", "--url", str(api.client.base_url))
    assert result.returncode == 1
    assert "DYNOSCOPE_FAULTS_ENABLED" in result.stderr
