"""Past MAX_IN_FLIGHT the API sheds load with a fast 503; health and /metrics always answer.

The overload is real: a PostgreSQL lock held by the test keeps list requests waiting on the
database, in flight, as a slow database would in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client.metrics_core import Metric

from tests.instrumentation.support import parse_text, sample_value
from tests.support.stack import Running, running_app

LIMIT = 4


@pytest.fixture
async def api(shared_environ: dict[str, str]) -> AsyncIterator[Running]:
    async with running_app({**shared_environ, "MAX_IN_FLIGHT": str(LIMIT)}) as running:
        yield running


async def _scrape(api: Running) -> dict[str, Metric]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    return parse_text(response.text)


async def _until_in_flight(api: Running, count: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        families = await _scrape(api)
        active = sample_value(families, "http_server_active_requests", route="/properties")
        if active == count:
            return
        assert time.monotonic() < deadline, f"{active} requests in flight, expected {count}"
        await asyncio.sleep(0.05)


async def test_overload_is_shed_with_503_and_health_is_never_shed(
    api: Running, clean_postgres: str
) -> None:
    blocker = await asyncpg.connect(clean_postgres)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("LOCK TABLE properties IN ACCESS EXCLUSIVE MODE")
    held = [
        asyncio.create_task(api.client.get(f"/properties?offset={index}")) for index in range(LIMIT)
    ]
    try:
        await _until_in_flight(api, LIMIT)

        for path in ("/properties/1", "/properties?city=berlin", "/auth/refresh"):
            started = time.perf_counter()
            shed = await api.client.get(path)
            assert time.perf_counter() - started < 0.5  # at once, not after the queue
            assert shed.status_code == 503
            assert shed.headers["retry-after"] == "1"
            assert shed.json() == {
                "error": "overloaded",
                "detail": f"the server is at capacity ({LIMIT} requests in flight); "
                "retry after 1 s",
            }
        # A login is admitted by its own class: reads being full does not stop it.
        login = await api.client.post("/auth/login", json={"email": "a@b.io", "password": "x" * 12})
        assert login.status_code == 401
        assert (await api.client.get("/healthz")).status_code == 200
        assert (await api.client.get("/readyz")).status_code == 200
        families = await _scrape(api)
        name = "http_server_rejected_requests_total"
        assert sample_value(families, name, reason="overload") == 3
    finally:
        await transaction.rollback()
        await blocker.close()
    assert [response.status_code for response in await asyncio.gather(*held)] == [200] * LIMIT
    await _until_in_flight(api, 0)
    assert (await api.client.get("/properties")).status_code == 200  # admitted again


async def test_password_hashing_is_a_class_of_its_own_refused_while_reads_go_on(
    shared_environ: dict[str, str],
) -> None:
    """A storm of sign-ins fills the hashing class (MAX_IN_FLIGHT_AUTH: one argon2 check at a
    time here) and the excess is refused at once; reads are admitted as before, and sign-ins
    do not count against MAX_IN_FLIGHT."""
    environ = {**shared_environ, "MAX_IN_FLIGHT": "1", "MAX_IN_FLIGHT_AUTH": "1"}
    async with running_app(environ) as api:
        body = {"email": "storm@example.com", "password": "not-the-password"}
        storm = [api.client.post("/auth/login", json=body) for _ in range(12)]
        reads = [api.client.get("/healthz"), api.client.get("/properties/1")]
        answers = await asyncio.gather(*storm, *reads)
        logins, served = answers[: len(storm)], answers[len(storm) :]
        statuses = sorted(r.status_code for r in logins)
        refused = [r for r in logins if r.status_code == 503]
        families = await _scrape(api)
    assert 401 in statuses and refused, statuses  # some checked, the excess refused
    assert set(statuses) <= {401, 503}, statuses
    assert "hashing as many passwords" in refused[0].json()["detail"]
    assert refused[0].headers["retry-after"] == "1"
    assert served[0].status_code == 200
    assert served[1].status_code in (200, 404)  # a read, not shed by the storm
    shed = sample_value(families, "http_server_rejected_requests_total", reason="overload")
    assert shed == len(refused)
