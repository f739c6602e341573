"""The per-app resources the routes use, built from settings at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth_metrics import AuthMetrics
from api.cache import Cache, CacheBackend, MemoryBackend, NullCache, RedisBackend
from api.db import create_engine, create_sessionmaker
from api.events import Broadcaster, MemoryBroadcaster, RedisBroadcaster
from api.redis_client import redis_client
from api.security import AccessTokens, Passwords
from api.settings import Mode, Settings
from api.throttle import Throttle

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
    # Rate limits on authentication (None: off), and what it counts (set by the app).
    throttle: Throttle | None = None
    auth_metrics: AuthMetrics | None = None

    async def close(self) -> None:
        await self.broadcaster.close()
        for client in [self.redis, *self.extra_redis]:
            if client is not None:
                await client.aclose()
        await self.engine.dispose()


def _redis(settings: Settings, *, listener: bool) -> Redis:
    assert settings.redis_url is not None
    return redis_client(
        settings.redis_url,
        # The listener holds one connection for its subscription and never times out on it.
        pool_size=2 if listener else settings.redis_pool_size,
        pool_timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=None if listener else settings.redis_timeout_seconds,
        connect_timeout=settings.redis_timeout_seconds,
    )


def build_services(settings: Settings) -> Services:
    engine = create_engine(settings)
    redis: Redis | None = None
    extras: list[Redis] = []
    backend: CacheBackend
    broadcaster: Broadcaster
    if settings.redis_url is not None:
        redis = _redis(settings, listener=False)
        listener = _redis(settings, listener=True)
        extras.append(listener)
        backend = RedisBackend(redis)
        broadcaster = RedisBroadcaster(
            publisher=redis,
            listener=listener,
            channel=f"{settings.redis_key_prefix}events:properties",
        )
    else:
        # The embedded default in development; worth a warning anywhere else.
        log.log(
            logging.INFO if settings.mode is Mode.DEVELOPMENT else logging.WARNING,
            "no REDIS_URL: using an in-process cache and event broadcaster "
            "(not production-safe: instances will not share cache or events)",
        )
        backend = MemoryBackend(max_entries=settings.cache_max_entries)
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
        passwords=Passwords(max_concurrent=settings.max_in_flight_auth),
        tokens=AccessTokens(
            secret=settings.signing_key, ttl_seconds=settings.access_token_ttl_seconds
        ),
        redis=redis,
        extra_redis=extras,
        throttle=_throttle(settings, redis),
    )


def _throttle(settings: Settings, redis: Redis | None) -> Throttle | None:
    if not settings.auth_rate_limits:
        log.warning("AUTH_RATE_LIMITS=false: logins, registrations and refreshes are unlimited")
        return None
    if redis is None:
        return Throttle.in_memory(settings.auth_limits)
    return Throttle.in_redis(
        settings.auth_limits, pool=redis.connection_pool, prefix=settings.redis_key_prefix
    )
