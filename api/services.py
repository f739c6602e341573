"""The per-app resources the routes use, built from settings at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.cache import Cache, CacheBackend, MemoryBackend, NullCache, RedisBackend
from api.db import create_engine, create_sessionmaker
from api.events import Broadcaster, MemoryBroadcaster, RedisBroadcaster
from api.security import AccessTokens, Passwords
from api.settings import Settings

log = logging.getLogger("dynoscope")


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: Cache
    broadcaster: Broadcaster
    passwords: Passwords
    tokens: AccessTokens
    redis: Redis | None = None
    extra_redis: list[Redis] = field(default_factory=list)

    async def close(self) -> None:
        await self.broadcaster.close()
        for client in [self.redis, *self.extra_redis]:
            if client is not None:
                await client.aclose()
        await self.engine.dispose()


def redis_client(settings: Settings, *, socket_timeout: float | None) -> Redis:
    assert settings.redis_url is not None
    # No retries: a cache must answer fast or step aside, not wait out a dead server.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )


def build_services(settings: Settings) -> Services:
    engine = create_engine(settings)
    redis: Redis | None = None
    extras: list[Redis] = []
    backend: CacheBackend
    broadcaster: Broadcaster
    if settings.redis_url is not None:
        redis = redis_client(settings, socket_timeout=settings.redis_timeout_seconds)
        listener = redis_client(settings, socket_timeout=None)
        extras.append(listener)
        backend = RedisBackend(redis)
        broadcaster = RedisBroadcaster(
            publisher=redis,
            listener=listener,
            channel=f"{settings.redis_key_prefix}events:properties",
        )
    else:
        log.warning(
            "no REDIS_URL: using an in-process cache and event broadcaster "
            "(not production-safe: instances will not share cache or events)"
        )
        backend = MemoryBackend()
        broadcaster = MemoryBroadcaster()
    cache = (
        Cache(backend=backend, name="properties", prefix=settings.redis_key_prefix + "cache:")
        if settings.cache_enabled
        else NullCache()
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=create_sessionmaker(engine),
        cache=cache,
        broadcaster=broadcaster,
        passwords=Passwords(),
        tokens=AccessTokens(
            secret=settings.signing_key, ttl_seconds=settings.access_token_ttl_seconds
        ),
        redis=redis,
        extra_redis=extras,
    )
