"""A busy Redis pool is back-pressure; only a server that is gone opens the cache's breaker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from api.cache import Cache, RedisBackend
from api.redis_client import BoundedPool, PoolExhausted, redis_client
from tests.api.test_cache import FakeClock, Loader, Recorder
from tests.support.redis_server import RedisServer
from tests.support.stack import running_app


@pytest.fixture
async def client(private_redis: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client(
        private_redis.url, pool_size=2, pool_timeout=0.05, socket_timeout=0.5, connect_timeout=0.5
    )
    yield client
    await client.aclose()


async def test_an_exhausted_pool_waits_then_says_busy(client: Redis) -> None:
    assert await client.ping() is True
    pool = client.connection_pool
    held = [await pool.get_connection() for _ in range(2)]
    with pytest.raises(PoolExhausted, match="all 2 Redis connections busy"):
        await client.ping()
    waiting = asyncio.create_task(client.ping())
    for _ in range(5):
        await asyncio.sleep(0)  # let it queue for a connection (yields, no time passes)
    assert not waiting.done()
    await pool.release(held.pop())  # a connection freed within the wait is taken
    assert await waiting is True
    await pool.release(held.pop())


async def test_the_breaker_stays_closed_while_every_connection_is_busy(
    client: Redis, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dynoscope.cache")
    recorder, load, clock = Recorder(), Loader(), FakeClock()
    cache = Cache(backend=RedisBackend(client), name="t", observer=recorder, clock=clock)
    await cache.cache_with_ttl("k", 60, load)
    pool = client.connection_pool
    held = [await pool.get_connection() for _ in range(2)]
    for _ in range(3):
        assert await cache.cache_with_ttl("k", 60, load) == load.value  # from the loader
    assert not cache.degraded
    assert recorder.lookups["error"] == 3
    for connection in held:
        await pool.release(connection)

    assert await cache.cache_with_ttl("k", 60, load) == load.value
    assert recorder.lookups["hit"] == 1  # straight back to the cache: nothing was opened
    assert load.calls == 4
    assert caplog.records == []

    private_redis.stop(keep_data=False)
    for _ in range(3):
        assert await cache.cache_with_ttl("k", 60, load) == load.value
    assert cache.degraded
    assert [r.getMessage() for r in caplog.records] == [
        "cache t: backend unavailable (ConnectionError); serving from the database"
    ]


async def test_a_write_the_busy_pool_could_not_announce_is_not_served_stale(
    client: Redis,
) -> None:
    cache = Cache(backend=RedisBackend(client), name="t", clock=FakeClock())
    load = Loader()
    await cache.cache_with_ttl("k", 60, load, namespace="n")
    pool = client.connection_pool
    held = [await pool.get_connection() for _ in range(2)]
    load.value = {"rows": ["changed"]}
    await cache.invalidate("n")  # the bump cannot get a connection
    for connection in held:
        await pool.release(connection)
    assert await cache.cache_with_ttl("k", 60, load, namespace="n") == {"rows": ["changed"]}
    calls = load.calls
    assert await cache.cache_with_ttl("k", 60, load, namespace="n") == {"rows": ["changed"]}
    assert load.calls == calls  # the bump went through and the new value is cached
    assert not cache.degraded


async def test_the_service_sizes_its_pool_from_settings(shared_environ: dict[str, str]) -> None:
    environ = {**shared_environ, "REDIS_POOL_SIZE": "7", "REDIS_POOL_TIMEOUT": "0.3"}
    async with running_app(environ) as api:
        redis = api.services.redis
        assert redis is not None
        pool = redis.connection_pool
        assert isinstance(pool, BoundedPool)
        assert (pool.max_connections, pool.timeout) == (7, 0.3)


async def test_more_callers_than_connections_all_get_one_and_give_it_back(
    private_redis: RedisServer,
) -> None:
    # Idle connections are handed out directly, callers beyond the pool wait and are woken
    # by releases. The wait is roomy: this is about bookkeeping, not speed.
    client = redis_client(
        private_redis.url, pool_size=2, pool_timeout=5, socket_timeout=5, connect_timeout=5
    )
    try:
        assert all(await asyncio.gather(*(client.ping() for _ in range(50))))
        pool = client.connection_pool
        held = [await pool.get_connection() for _ in range(2)]  # none leaked: both are free
        assert not pool.can_get_connection()
        for connection in held:
            await pool.release(connection)
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_a_server_that_does_not_know_the_lookup_script_is_taught_it(client: Redis) -> None:
    # A fresh server has never seen the script, and SCRIPT FLUSH (or a restart) forgets it.
    cache = Cache(backend=RedisBackend(client), name="t", clock=FakeClock())
    load = Loader()
    await cache.cache_with_ttl("k", 60, load)
    await client.script_flush()
    assert await cache.cache_with_ttl("k", 60, load) == load.value
    assert load.calls == 1  # the second read was a hit, through the reloaded script
    assert not cache.degraded
