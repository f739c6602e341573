"""Cache lookups of the same moment share one round trip to Redis, and fail only together
with the connection they shared."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from api.cache import Cache, RedisBackend
from api.redis_client import COALESCE, MAX_BATCH, redis_client
from tests.api.test_cache import FakeClock, Loader, Recorder
from tests.support.redis_server import RedisServer


@pytest.fixture
async def client(private_redis: RedisServer) -> AsyncIterator[Redis]:
    # One connection and almost no wait for it: a caller that needed a connection of its
    # own would find it busy.
    client = redis_client(
        private_redis.url, pool_size=1, pool_timeout=0.001, socket_timeout=2, connect_timeout=2
    )
    yield client
    await client.aclose()


async def _reads_processed(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_reads_processed"])


async def test_lookups_of_one_moment_go_in_one_write_on_one_connection(
    client: Redis, private_redis: RedisServer
) -> None:
    recorder, load = Recorder(), Loader()
    cache = Cache(backend=RedisBackend(client), name="t", observer=recorder, clock=FakeClock())
    await cache.cache_with_ttl("k", 60, load)
    async with Redis.from_url(private_redis.url) as observer:
        before = await _reads_processed(observer)
        values = await asyncio.gather(*(cache.cache_with_ttl("k", 60, load) for _ in range(100)))
        reads = await _reads_processed(observer) - before

    assert values == [load.value] * 100
    assert recorder.lookups["hit"] == 100
    assert recorder.lookups["error"] == 0  # nobody found the only connection busy
    assert load.calls == 1
    # 100 commands, one write each way (and the INFO that asked): the server read a
    # handful of times, not a hundred.
    assert reads < 10


async def test_batches_are_bounded(private_redis: RedisServer) -> None:
    count = MAX_BATCH * 2 + 5
    async with (
        redis_client(
            private_redis.url, pool_size=4, pool_timeout=2, socket_timeout=2, connect_timeout=2
        ) as client,
        Redis.from_url(private_redis.url) as observer,
    ):
        await client.set("k", b"v")
        replies = await asyncio.gather(
            *(client.execute_command("GET", "k", **{COALESCE: True}) for _ in range(count))
        )
        connected = len(await observer.client_list()) - 1  # the observer's own
    assert replies == [b"v"] * count
    assert connected == 3  # three batches went out side by side, one connection each


async def test_an_error_reply_fails_its_own_command_only(client: Redis) -> None:
    await client.set("k", b"v")
    unknown_script = client.execute_command("EVALSHA", "0" * 40, 0, **{COALESCE: True})
    before, failed, after = await asyncio.gather(
        client.execute_command("GET", "k", **{COALESCE: True}),
        unknown_script,
        client.execute_command("GET", "k", **{COALESCE: True}),
        return_exceptions=True,
    )
    assert (before, after) == (b"v", b"v")
    assert isinstance(failed, NoScriptError)
    assert await client.execute_command("GET", "k", **{COALESCE: True}) == b"v"


async def test_a_caller_that_goes_away_leaves_the_others_their_replies(client: Redis) -> None:
    await client.set("k", b"v")
    callers = [
        asyncio.ensure_future(client.execute_command("GET", "k", **{COALESCE: True}))
        for _ in range(10)
    ]
    await asyncio.sleep(0)  # all queued in one batch
    callers[3].cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert results[:3] + results[4:] == [b"v"] * 9
    assert await client.execute_command("GET", "k", **{COALESCE: True}) == b"v"


async def test_a_server_gone_fails_the_whole_batch_at_once_and_its_return_heals_it(
    client: Redis, private_redis: RedisServer
) -> None:
    await client.set("k", b"v")
    private_redis.stop()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(client.execute_command("GET", "k", **{COALESCE: True}) for _ in range(20)),
            return_exceptions=True,
        ),
        timeout=10,
    )
    assert all(isinstance(result, RedisConnectionError) for result in results), results
    private_redis.start()
    assert await client.execute_command("GET", "k", **{COALESCE: True}) == b"v"


async def test_a_frozen_server_fails_the_waiting_lookups_once_and_opens_the_breaker(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A server that stops answering (connections open, no replies) is found out by the read
    # timeout: every lookup of the batch waiting on it is answered from the loader at once,
    # the outage is logged once, and caching resumes when the server answers again.
    caplog.set_level(logging.WARNING, logger="dynoscope.cache")
    recorder, load, clock = Recorder(), Loader(), FakeClock()
    async with redis_client(
        private_redis.url, pool_size=4, pool_timeout=1, socket_timeout=0.3, connect_timeout=0.3
    ) as client:
        cache = Cache(backend=RedisBackend(client), name="t", observer=recorder, clock=clock)
        await cache.cache_with_ttl("k", 60, load)
        private_redis.pause()
        try:
            values = await asyncio.wait_for(
                asyncio.gather(*(cache.cache_with_ttl("k", 60, load) for _ in range(20))),
                timeout=10,
            )
            assert values == [load.value] * 20
            assert cache.degraded
            assert recorder.lookups["error"] == 20
            assert load.calls == 2  # the 20 shared one load (single flight), as before
        finally:
            private_redis.resume()
        clock.now += 5  # past the breaker's retry delay
        assert await cache.cache_with_ttl("k", 60, load) == load.value
        assert not cache.degraded
        assert recorder.lookups["hit"] == 1
    assert [r.getMessage() for r in caplog.records] == [
        "cache t: backend unavailable (TimeoutError); serving from the database",
        "cache t: backend reachable again, caching resumed",
    ]
