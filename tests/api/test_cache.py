"""The cache on its own: hit, miss, expiry, invalidation, single flight, outage, recovery."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from api.cache import Cache, MemoryBackend, RedisBackend
from tests.support.redis_server import RedisServer
from tests.support.services import REDIS_URL


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A CacheObserver that remembers lookups."""

    def __init__(self) -> None:
        self.lookups: Counter[str] = Counter()

    def on_lookup(self, cache: str, result: str) -> None:
        self.lookups[result] += 1

    def on_operation(self, cache: str, operation: str, seconds: float) -> None:
        assert seconds >= 0


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.value: object = {"rows": [1, 2]}

    async def __call__(self) -> object:
        self.calls += 1
        return self.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield Cache(backend=MemoryBackend(clock), name="t", prefix=redis_prefix, clock=clock)
        return
    client = Redis.from_url(REDIS_URL)
    yield Cache(backend=RedisBackend(client), name="t", prefix=redis_prefix, clock=clock)
    await client.aclose()


async def test_miss_then_hit(cache: Cache) -> None:
    recorder = Recorder()
    cache.set_observer(recorder)
    load = Loader()
    first = await cache.cache_with_ttl("k", 60, load, namespace="n")
    second = await cache.cache_with_ttl("k", 60, load, namespace="n")
    assert first == second == {"rows": [1, 2]}
    assert load.calls == 1
    assert recorder.lookups == {"miss": 1, "hit": 1}


async def test_keys_are_independent(cache: Cache) -> None:
    load = Loader()
    await cache.cache_with_ttl("a", 60, load, namespace="n")
    await cache.cache_with_ttl("b", 60, load, namespace="n")
    await cache.cache_with_ttl("a", 60, load, namespace="other")
    assert load.calls == 3


async def test_expiry_on_a_fixed_clock(clock: FakeClock) -> None:
    cache = Cache(backend=MemoryBackend(clock), name="t", clock=clock)
    load = Loader()
    await cache.cache_with_ttl("k", 300, load)
    clock.now += 299.9
    await cache.cache_with_ttl("k", 300, load)
    assert load.calls == 1
    clock.now += 0.2
    await cache.cache_with_ttl("k", 300, load)
    assert load.calls == 2


async def test_expiry_in_redis(redis_prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    cache = Cache(backend=RedisBackend(client), name="t", prefix=redis_prefix)
    load = Loader()
    try:
        await cache.cache_with_ttl("k", 300, load)
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}default:*")]
        assert len(keys) == 1
        ttl_ms = await client.pttl(keys[0])
        assert 299_000 < ttl_ms <= 300_000
        await client.delete(keys[0])  # what expiry does, without waiting 300 s
        await cache.cache_with_ttl("k", 300, load)
        assert load.calls == 2
    finally:
        await client.aclose()


async def test_invalidation_makes_the_next_read_miss(cache: Cache) -> None:
    load = Loader()
    await cache.cache_with_ttl("k", 60, load, namespace="n")
    load.value = {"rows": [1, 2, 3]}
    await cache.invalidate("n")
    assert await cache.cache_with_ttl("k", 60, load, namespace="n") == {"rows": [1, 2, 3]}
    await cache.cache_with_ttl("k", 60, load, namespace="n")
    assert load.calls == 2


async def test_invalidation_reaches_another_instance(redis_prefix: str) -> None:
    a_client, b_client = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    a = Cache(backend=RedisBackend(a_client), name="t", prefix=redis_prefix)
    b = Cache(backend=RedisBackend(b_client), name="t", prefix=redis_prefix)
    load = Loader()
    try:
        await b.cache_with_ttl("k", 60, load, namespace="n")
        await a.cache_with_ttl("k", 60, load, namespace="n")
        assert load.calls == 1  # A hit what B stored
        await a.invalidate("n")
        await b.cache_with_ttl("k", 60, load, namespace="n")
        assert load.calls == 2
    finally:
        await a_client.aclose()
        await b_client.aclose()


class AllMissed(Recorder):
    """Set once ``expected`` lookups have missed: each caller then waits on the flight.

    A miss is reported right before the caller joins (or starts) the flight, with no await
    in between, so this is the moment every caller is committed to one flight.
    """

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.event = asyncio.Event()

    def on_lookup(self, cache: str, result: str) -> None:
        super().on_lookup(cache, result)
        if self.lookups["miss"] == self.expected:
            self.event.set()


async def test_single_flight_loads_once_for_64_concurrent_misses(cache: Cache) -> None:
    release = asyncio.Event()
    calls = 0
    missed = AllMissed(64)
    cache.set_observer(missed)

    async def slow_loader() -> list[int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return [calls]

    tasks = [
        asyncio.create_task(cache.cache_with_ttl("cold", 60, slow_loader, namespace="n"))
        for _ in range(64)
    ]
    await asyncio.wait_for(missed.event.wait(), 5)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(result == [1] for result in results)


async def test_single_flight_shares_a_failure_without_caching_it(cache: Cache) -> None:
    release = asyncio.Event()
    calls = 0
    missed = AllMissed(8)
    cache.set_observer(missed)

    async def failing() -> None:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("database down")

    tasks = [asyncio.create_task(cache.cache_with_ttl("x", 60, failing)) for _ in range(8)]
    await asyncio.wait_for(missed.event.wait(), 5)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    load = Loader()
    assert await cache.cache_with_ttl("x", 60, load) == load.value


async def test_outage_fails_open_logs_once_and_recovers(
    private_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = Redis.from_url(private_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    recorder = Recorder()
    cache = Cache(
        backend=RedisBackend(client), name="t", observer=recorder, retry_after=5, clock=clock
    )
    load = Loader()
    try:
        await cache.cache_with_ttl("k", 60, load)
        await cache.cache_with_ttl("k", 60, load)
        assert (load.calls, recorder.lookups["hit"]) == (1, 1)

        private_redis.stop(keep_data=True)
        caplog.set_level(logging.WARNING, logger="dynoscope.cache")
        for _ in range(5):
            assert await cache.cache_with_ttl("k", 60, load) == load.value
        assert load.calls == 6  # every call served by the loader
        assert cache.degraded
        assert recorder.lookups["error"] == 5
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1

        # A write during the outage cannot bump the generation yet...
        load.value = {"rows": ["changed"]}
        await cache.invalidate("default")

        private_redis.start()  # ...and Redis comes back holding the stale entry.
        assert await cache.cache_with_ttl("k", 60, load) == load.value  # still backing off
        clock.now += 5
        assert await cache.cache_with_ttl("k", 60, load) == {"rows": ["changed"]}
        assert not cache.degraded
        calls = load.calls
        assert await cache.cache_with_ttl("k", 60, load) == {"rows": ["changed"]}
        assert load.calls == calls  # cached again
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await client.aclose()


async def test_a_cancelled_leader_does_not_fail_its_waiters(cache: Cache) -> None:
    release = asyncio.Event()
    calls = 0
    started = AllMissed(1)
    cache.set_observer(started)

    async def slow_loader() -> list[int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return [calls]

    leader = asyncio.create_task(cache.cache_with_ttl("cold", 60, slow_loader, namespace="n"))
    await asyncio.wait_for(started.event.wait(), 5)  # the leader has started the load
    missed = AllMissed(3)
    cache.set_observer(missed)
    waiters = [
        asyncio.create_task(cache.cache_with_ttl("cold", 60, slow_loader, namespace="n"))
        for _ in range(3)
    ]
    await asyncio.wait_for(missed.event.wait(), 5)
    leader.cancel()  # its client went away
    with pytest.raises(asyncio.CancelledError):
        await leader
    release.set()
    assert await asyncio.gather(*waiters) == [[1], [1], [1]]
    assert calls == 1
    assert await cache.cache_with_ttl("cold", 60, slow_loader, namespace="n") == [1]  # stored


async def test_the_in_process_cache_holds_its_bound_under_100000_distinct_keys() -> None:
    backend = MemoryBackend(max_entries=1_000)
    cache = Cache(backend=backend, name="t")
    load = Loader()
    await cache.cache_with_ttl("popular", 60, load, namespace="n")
    for index in range(100_000):
        await cache.cache_with_ttl(f"list:page={index}", 60, load, namespace="n")
        if index % 100 == 0:
            await cache.cache_with_ttl("popular", 60, load, namespace="n")  # recently used
    assert len(backend) <= 1_000 + 1  # the values, and the one generation counter
    calls = load.calls
    await cache.cache_with_ttl("popular", 60, load, namespace="n")
    await cache.cache_with_ttl("list:page=99999", 60, load, namespace="n")
    assert load.calls == calls  # the recently used survived
    await cache.cache_with_ttl("list:page=0", 60, load, namespace="n")
    assert load.calls == calls + 1  # the least recently used went first


async def test_forgotten_generations_never_bring_old_entries_back() -> None:
    backend = MemoryBackend(max_entries=1_000)
    cache = Cache(backend=backend, name="t")
    load = Loader()
    await cache.cache_with_ttl("k", 60, load, namespace="item:1")
    await cache.invalidate("item:1")
    load.value = {"rows": ["new"]}
    assert await cache.cache_with_ttl("k", 60, load, namespace="item:1") == {"rows": ["new"]}
    for index in range(2, 100_002):  # writes to 100,000 other items push item:1's counter out
        await cache.invalidate(f"item:{index}")
    assert len(backend) <= 2 * 1_000
    load.value = {"rows": ["newest"]}
    # Neither entry stored under an old generation of item:1 is reachable any more.
    assert await cache.cache_with_ttl("k", 60, load, namespace="item:1") == {"rows": ["newest"]}
