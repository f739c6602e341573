"""Rate limits on authentication, shared by every instance (docs/security.md).

Sliding-window counters from the ``limits`` library, kept in Redis when the service has one
(every instance counts against the same windows, so adding instances adds no attempts) and
in memory in the embedded default. What counts:

- a login **failure** counts against the client (``AUTH_LOGIN_FAILURES_PER_CLIENT``: many
  accounts tried from one address, credential stuffing), against the account from that
  client (``AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT``: guessing one password, slowed down
  progressively by a short and a long window), and against the account from clients it has
  never logged in from (``AUTH_LOGIN_FAILURES_PER_ACCOUNT``: guessing spread over many
  addresses). A successful login from a client clears that client's count for the account
  and makes the client known to it, so an attacker elsewhere never locks the owner out;
- every registration made, or refused because the address is taken, counts against its
  client (``AUTH_REGISTER_PER_CLIENT``);
- a refresh with a token that does not work counts against its client
  (``AUTH_REFRESH_FAILURES_PER_CLIENT``).

Past a limit the request is refused before any password is hashed: 429 with ``Retry-After``.
Successful logins are never limited here (``MAX_IN_FLIGHT_AUTH`` bounds how many hash at
once). Redis down: limits are not enforced (fail open, logged once, counted through
``on_error`` as ``dynoscope_dependency_errors_total{dependency="rate_limits"}``), since
refusing every login would be worse than an unthrottled minute.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

log = logging.getLogger("dynoscope.api")

KNOWN_FOR = 30 * 24 * 3600  # seconds a client stays known to an account after a login


def account_key(email: str) -> str:
    """The account as the limits know it: a digest, so no address is kept in Redis."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]


def parse_limits(value: str, *, variable: str) -> tuple[RateLimitItem, ...]:
    """``"5/minute;20/hour"`` → the limits, or ``ValueError`` naming ``variable``."""
    try:
        items = tuple(parse_many(value))
    except ValueError:
        raise ValueError(f"{variable}: not a list of limits such as 5/minute;20/hour") from None
    if not items:
        raise ValueError(f"{variable}: give at least one limit, e.g. 5/minute")
    return items


@dataclass(frozen=True)
class AuthLimits:
    login_per_client: tuple[RateLimitItem, ...]
    login_per_account_client: tuple[RateLimitItem, ...]
    login_per_account: tuple[RateLimitItem, ...]
    register_per_client: tuple[RateLimitItem, ...]
    refresh_per_client: tuple[RateLimitItem, ...]


class Throttled(Exception):
    """A limit is reached: come back in ``retry_after`` seconds."""

    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(f"too many {what}; retry after {retry_after} s")
        self.retry_after = retry_after
        self.what = what


class Throttle:
    """The auth limits on one storage; every method raises ``Throttled`` or returns."""

    def __init__(self, limits: AuthLimits, storage: Storage) -> None:
        self.limits = limits
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._down = False
        self.on_error: Callable[[], None] | None = None  # set by the app: counts each failure

    @classmethod
    def in_memory(cls, limits: AuthLimits) -> Throttle:
        return cls(limits, MemoryStorage())

    @classmethod
    def in_redis(cls, limits: AuthLimits, *, pool: ConnectionPool, prefix: str) -> Throttle:
        """On the service's own Redis connection pool, under its key prefix."""
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{prefix}ratelimit",
            connection_pool=pool,  # type: ignore[arg-type]
        )
        return cls(limits, storage)

    # --- login ------------------------------------------------------------------------------

    async def before_login(self, account: str, client: str) -> bool:
        """Refuse a login attempt that a failure limit already stops; whether the client is
        known to the account (hand it to ``login_failed``)."""
        await self._check(self.limits.login_per_client, "failed logins", "login", client)
        await self._check(
            self.limits.login_per_account_client, "failed logins", "login", account, client
        )
        known = await self._known(account, client)
        if not known:
            await self._check(self.limits.login_per_account, "failed logins", "login", account)
        return known

    async def login_failed(self, account: str, client: str, *, known: bool) -> None:
        await self._hit(self.limits.login_per_client, "login", client)
        await self._hit(self.limits.login_per_account_client, "login", account, client)
        if not known:
            await self._hit(self.limits.login_per_account, "login", account)

    async def login_succeeded(self, account: str, client: str) -> None:
        """The owner (or whoever knows the password) is here: this client's failures for the
        account are forgotten, and the client is known to the account from now on."""
        try:
            for item in self.limits.login_per_account_client:
                await self._limiter.clear(item, "login", account, client)
            await self._storage.incr(self._known_key(account, client), KNOWN_FOR)
        except Exception as exc:
            self._unavailable(exc)

    # --- registration and refresh -----------------------------------------------------------

    async def before_register(self, client: str) -> None:
        await self._check(self.limits.register_per_client, "registrations", "register", client)

    async def registered(self, client: str) -> None:
        """Count a registration that was decided (made, or refused as taken): one refused for
        overload or a malformed body costs the client nothing."""
        await self._hit(self.limits.register_per_client, "register", client)

    async def before_refresh(self, client: str) -> None:
        await self._check(self.limits.refresh_per_client, "failed refreshes", "refresh", client)

    async def refresh_failed(self, client: str) -> None:
        await self._hit(self.limits.refresh_per_client, "refresh", client)

    # --- the mechanics ----------------------------------------------------------------------

    async def _check(self, items: Sequence[RateLimitItem], what: str, *key: str) -> None:
        try:
            for item in items:
                if not await self._limiter.test(item, *key):
                    stats = await self._limiter.get_window_stats(item, *key)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    raise Throttled(wait, what)
        except Throttled:
            raise
        except Exception as exc:
            self._unavailable(exc)
            return
        self._available()

    async def _hit(self, items: Sequence[RateLimitItem], *key: str) -> None:
        try:
            for item in items:
                await self._limiter.hit(item, *key)
        except Exception as exc:
            self._unavailable(exc)

    async def _known(self, account: str, client: str) -> bool:
        try:
            return await self._storage.get(self._known_key(account, client)) > 0
        except Exception as exc:
            self._unavailable(exc)
            return True  # limits unknown: the account-wide one is not applied

    @staticmethod
    def _known_key(account: str, client: str) -> str:
        return f"known/{account}/{client}"

    def _unavailable(self, exc: BaseException) -> None:
        if self.on_error is not None:
            self.on_error()
        if not self._down:
            log.error(
                "auth rate limits unavailable (%s): not enforced until the store answers",
                type(exc).__name__,
            )
        self._down = True

    def _available(self) -> None:
        if self._down:
            log.warning("auth rate limits enforced again")
        self._down = False
