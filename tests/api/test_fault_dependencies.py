"""Faults on real dependencies: a real lock on PostgreSQL (``db_slow``), and a commands file
that really stops and starts the test's private Redis (``redis_down``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.alerts.harness import Served, served_api
from tests.instrumentation.support import parse_text
from tests.support.faults import ADMIN, faults_on
from tests.support.redis_server import RedisServer

HOLD = 2.0
LOCKED = """
    SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE c.relname = 'properties' AND l.mode = 'AccessExclusiveLock'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dynoscope-fault-db_slow'"
)


async def _count(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def _timed_list(api: Served) -> float:
    started = time.monotonic()
    response = await api.client.get("/properties")
    assert response.status_code == 200
    return time.monotonic() - started


def _slow_selects(scrape: str) -> float:
    family = parse_text(scrape)["db_client_slow_queries"]
    return sum(
        s.value
        for s in family.samples
        if s.name.endswith("_total") and s.labels == {"operation": "SELECT", "table": "properties"}
    )


async def test_db_slow_holds_a_real_lock_the_service_waits_on(
    shared_environ: dict[str, str], clean_postgres: str
) -> None:
    # No cache: every list reaches the database.
    environ = faults_on(shared_environ, CACHE_ENABLED="false")
    async with served_api(environ) as api:
        assert await _timed_list(api) < 1.0
        on = await api.client.put(
            "/admin/faults/db_slow", headers=ADMIN, json={"hold": HOLD, "period": 60}
        )
        assert on.status_code == 200, on.text
        assert on.json()["locks"] == 1  # held by the time the switch answers
        took = await _timed_list(api)
        assert took >= HOLD - 0.3, took
        assert took < HOLD + 2
        scrape = (await api.client.get("/metrics")).text
        assert _slow_selects(scrape) >= 1
        assert 'dynoscope_fault_active{fault="db_slow"} 1.0' in scrape

        # A long hold, then off: released at once, not at the end of the hold.
        again = await api.client.put(
            "/admin/faults/db_slow", headers=ADMIN, json={"hold": 30, "period": 30}
        )
        assert again.status_code == 200
        assert await _count(clean_postgres, LOCKED) == 1
        off = await api.client.delete("/admin/faults/db_slow", headers=ADMIN)
        assert off.status_code == 200 and not off.json()["active"]
        assert await _count(clean_postgres, LOCKED) == 0
        assert await _count(clean_postgres, SESSIONS) == 0
        assert await _timed_list(api) < 1.0
        scrape = (await api.client.get("/metrics")).text
        assert 'dynoscope_fault_active{fault="db_slow"} 0.0' in scrape


async def test_db_slow_lock_goes_when_the_app_stops(
    shared_environ: dict[str, str], clean_postgres: str
) -> None:
    async with served_api(faults_on(shared_environ)) as api:
        on = await api.client.put(
            "/admin/faults/db_slow", headers=ADMIN, json={"hold": 30, "period": 30}
        )
        assert on.status_code == 200
        assert await _count(clean_postgres, LOCKED) == 1
    assert await _count(clean_postgres, LOCKED) == 0
    assert await _count(clean_postgres, SESSIONS) == 0


async def test_db_slow_gives_up_a_lock_it_cannot_get_and_says_so(
    shared_environ: dict[str, str], clean_postgres: str
) -> None:
    async with served_api(faults_on(shared_environ)) as api:
        blocker = await asyncpg.connect(clean_postgres)
        try:
            # An open transaction reading the table: the fault's lock_timeout (5 s) gives up.
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE properties IN ACCESS SHARE MODE")
            response = await api.client.put("/admin/faults/db_slow", headers=ADMIN, json={})
            await transaction.rollback()
        finally:
            await blocker.close()
        listed = (await api.client.get("/admin/faults", headers=ADMIN)).json()["faults"]
    assert response.status_code == 502
    assert response.json() == {
        "error": "fault_failed",
        "detail": "db_slow: cannot lock properties: LockNotAvailableError",
    }
    assert not listed[0]["active"]
    assert await _count(clean_postgres, SESSIONS) == 0


async def test_db_slow_names_a_bad_period(shared_environ: dict[str, str]) -> None:
    async with served_api(faults_on(shared_environ)) as api:
        response = await api.client.put(
            "/admin/faults/db_slow", headers=ADMIN, json={"hold": 5, "period": 1}
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.period"
    assert "period must be at least hold" in response.json()["detail"]


# --- external faults: a commands file --------------------------------------------------------


@pytest.fixture
def private_redis(private_redis: RedisServer) -> Iterator[RedisServer]:
    server = private_redis
    yield server
    server.stop(keep_data=False)
    # The one the fault's off command started runs on its own, daemonised.
    client = redis.Redis(port=server.port, socket_connect_timeout=0.2)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    finally:
        client.close()


def _commands_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "faults.yml"
    path.write_text(
        f"""
redis_down:
  on: [redis-cli, -p, "{port}", shutdown, nosave]
  off: [redis-server, --port, "{port}", --bind, 127.0.0.1, --save, "", --appendonly, no,
        --dir, "{tmp_path}", --daemonize, yes, --pidfile, "{tmp_path}/redis.pid"]
  timeout: 10
broken:
  on: [sh, -c, "echo cannot reach the-secret-host >&2; exit 3"]
  off: [/nonexistent/bin/fault-off, --password, hunter2]
slow_command:
  on: [sleep, "5"]
  off: ["true"]
  timeout: 0.5
"""
    )
    return path


def _cache_errors(scrape: str) -> float:
    family = parse_text(scrape)["cache_requests"]
    return sum(
        s.value
        for s in family.samples
        if s.name.endswith("_total") and s.labels["result"] == "error"
    )


async def test_redis_down_stops_redis_the_api_degrades_and_off_brings_it_back(
    shared_environ: dict[str, str], private_redis: RedisServer, tmp_path: Path
) -> None:
    environ = faults_on(
        shared_environ,
        REDIS_URL=private_redis.url,
        REDIS_TIMEOUT="0.2",
        DYNOSCOPE_FAULT_COMMANDS=str(_commands_file(tmp_path, private_redis.port)),
    )
    probe = redis.Redis(port=private_redis.port, socket_connect_timeout=0.2)
    async with served_api(environ) as api:
        assert (await api.client.get("/properties")).status_code == 200
        on = await api.client.put("/admin/faults/redis_down", headers=ADMIN)
        assert on.status_code == 200, on.text
        assert on.json()["active"]
        with pytest.raises(redis.ConnectionError):
            probe.ping()

        for _ in range(3):  # the API keeps answering, from the database
            assert (await api.client.get("/properties?city=Berlin")).status_code == 200
        scrape = (await api.client.get("/metrics")).text
        assert _cache_errors(scrape) >= 1
        assert api.app.state.services.cache.degraded
        assert 'dynoscope_fault_active{fault="redis_down"} 1.0' in scrape

        off = await api.client.delete("/admin/faults/redis_down", headers=ADMIN)
        assert off.status_code == 200, off.text
        assert probe.ping()
        deadline = time.monotonic() + 10
        while api.app.state.services.cache.degraded:  # the breaker closes on its next probe
            assert time.monotonic() < deadline, "the cache never came back"
            await api.client.get("/properties")
            await asyncio.sleep(0.2)
    probe.close()


async def test_a_failing_command_is_a_clear_json_error_and_its_argv_is_not_logged(
    shared_environ: dict[str, str],
    private_redis: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = faults_on(
        shared_environ,
        DYNOSCOPE_FAULT_COMMANDS=str(_commands_file(tmp_path, private_redis.port)),
    )
    caplog.set_level(logging.INFO)
    async with served_api(environ) as api:
        failed = await api.client.put("/admin/faults/broken", headers=ADMIN, json={})
        assert failed.status_code == 502
        assert failed.json() == {
            "error": "fault_command_failed",
            "detail": "broken on: the command exited with status 3",
            "output": "cannot reach the-secret-host\n",
        }
        missing = await api.client.delete("/admin/faults/broken", headers=ADMIN)
        assert missing.status_code == 500
        assert missing.json()["detail"] == ("broken off: cannot run the command: FileNotFoundError")
        slow = await api.client.put("/admin/faults/slow_command", headers=ADMIN)
        assert slow.status_code == 502
        assert "timed out after 0.5 s" in slow.json()["detail"]
        params = await api.client.put("/admin/faults/broken", headers=ADMIN, json={"x": 1})
        assert params.status_code == 422 and params.json()["errors"][0]["field"] == "body.x"
        listed = (await api.client.get("/admin/faults", headers=ADMIN)).json()["faults"]
        assert not next(f for f in listed if f["name"] == "broken")["active"]
    assert "broken" in caplog.text
    for secret in ("hunter2", "the-secret-host", "/nonexistent/bin"):
        assert secret not in caplog.text
