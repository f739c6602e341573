"""The cache as the API uses it: one query per cold key, fresh after writes, fail-open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.redis_server import RedisServer
from tests.support.stack import Running, running_app
from tests.support.users import listing, register_and_login


class QueryCounter:
    def __init__(self, running: Running) -> None:
        self.statements: list[str] = []
        self._engine = running.services.engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement)

    @property
    def property_selects(self) -> int:
        return sum(
            1
            for s in self.statements
            if s.lstrip().upper().startswith("SELECT") and "FROM properties" in s
        )

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)


@pytest.fixture
async def api(environ: dict[str, str]) -> AsyncIterator[Running]:
    # These tests count queries; a loaded machine that takes over the default 0.5 s to open
    # 64 Redis connections at once would open the breaker and add a query (fail-open is
    # tested on its own below).
    async with running_app({**environ, "REDIS_TIMEOUT": "2"}) as running:
        yield running


@pytest.fixture
def queries(api: Running) -> Iterator[QueryCounter]:
    counter = QueryCounter(api)
    yield counter
    counter.close()


async def test_64_concurrent_requests_for_a_cold_list_run_one_query(
    api: Running, queries: QueryCounter
) -> None:
    responses = await asyncio.gather(
        *(api.client.get("/properties?city=Vienna&limit=50") for _ in range(64))
    )
    assert {r.status_code for r in responses} == {200}
    assert queries.property_selects == 1


async def test_repeated_lists_hit_and_writes_invalidate(
    api: Running, queries: QueryCounter
) -> None:
    owner = await register_and_login(api.client)
    for _ in range(10):
        await api.client.get("/properties?min_price=1")
    assert queries.property_selects == 1
    # Equal queries written differently share one entry.
    await api.client.get("/properties?min_price=1.00&limit=20")
    assert queries.property_selects == 1

    created = await api.client.post("/properties", json=listing(), headers=owner["headers"])
    listed = await api.client.get("/properties?min_price=1")
    assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]


async def test_redis_outage_keeps_the_api_serving_and_recovers(
    shared_environ: dict[str, str], private_redis: RedisServer
) -> None:
    environ = {
        **shared_environ,
        "REDIS_URL": private_redis.url,
        "REDIS_TIMEOUT": "0.2",
        "READY_TIMEOUT": "0.5",
    }
    async with running_app(environ) as api:
        counter = QueryCounter(api)
        owner = await register_and_login(api.client)
        await api.client.post("/properties", json=listing(city="Dublin"), headers=owner["headers"])
        baseline = counter.property_selects
        await api.client.get("/properties?city=Dublin")
        await api.client.get("/properties?city=Dublin")
        assert counter.property_selects == baseline + 1

        private_redis.stop(keep_data=True)
        ready = await api.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["redis"]

        # Writes and reads keep working from the database.
        created = await api.client.post(
            "/properties",
            json=listing(city="Dublin", title="During outage"),
            headers=owner["headers"],
        )
        assert created.status_code == 201
        # The event could not be published: counted, not fatal.
        scrape = (await api.client.get("/metrics")).text
        assert 'dynoscope_dependency_errors_total{dependency="redis_publish"} 1.0' in scrape
        assert 'cache_requests_total{cache="properties",result="error"}' in scrape
        during = await api.client.get("/properties?city=Dublin")
        assert during.status_code == 200
        assert len(during.json()["items"]) == 2

        private_redis.start()
        deadline = time.monotonic() + 10
        while (await api.client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "readyz never recovered"
            await asyncio.sleep(0.1)
        # Once the cache retries, the list is fresh (the outage write is not hidden) ...
        while api.services.cache.degraded:
            assert time.monotonic() < deadline, "cache never resumed"
            after = await api.client.get("/properties?city=Dublin")
            assert len(after.json()["items"]) == 2
            await asyncio.sleep(0.1)
        # ... and cached again.
        selects = counter.property_selects
        for _ in range(3):
            assert len((await api.client.get("/properties?city=Dublin")).json()["items"]) == 2
        assert counter.property_selects <= selects + 1
        counter.close()


async def test_a_write_invalidates_only_the_lists_it_can_change(
    api: Running, queries: QueryCounter
) -> None:
    owner = await register_and_login(api.client)
    berlin = await api.client.post(
        "/properties", json=listing(city="Berlin"), headers=owner["headers"]
    )
    await api.client.post("/properties", json=listing(city="Lisbon"), headers=owner["headers"])

    async def ids(query: str) -> list[int]:
        return [item["id"] for item in (await api.client.get(query)).json()["items"]]

    for query in ("/properties?city=berlin", "/properties?city=lisbon", "/properties"):
        await ids(query)
    before = queries.property_selects
    await api.client.patch(
        f"/properties/{berlin.json()['id']}", json={"price": 5}, headers=owner["headers"]
    )
    after_write = queries.property_selects
    assert len(await ids("/properties?city=lisbon")) == 1
    assert queries.property_selects == after_write  # Lisbon's lists were not touched
    await ids("/properties?city=berlin")
    await ids("/properties")
    assert queries.property_selects == after_write + 2
    assert after_write > before

    # Moving a listing to another city refreshes both cities' lists.
    await api.client.patch(
        f"/properties/{berlin.json()['id']}", json={"city": "Lisbon"}, headers=owner["headers"]
    )
    assert await ids("/properties?city=berlin") == []
    assert berlin.json()["id"] in await ids("/properties?city=LISBON")
    assert (await api.client.get(f"/properties/{berlin.json()['id']}")).json()["city"] == "Lisbon"
