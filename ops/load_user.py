"""One simulated user of the API: what it asks for, and what it remembers between requests.

    user = User(client=client, recorder=recorder, rng=random.Random(1), mix=DEFAULT_MIX,
                think=(0.5, 1.5), pacer=Pacer(None), writes=Writes.as_("a@b.c", "secret"))
    await user.run(until=time.monotonic() + 30)

A user remembers the properties its last lists showed (it opens those, as a person clicks a
result), the token pair of its session, and the listings it created (the only ones it may
update). Cities and prices are those of ``dynoscope seed`` and the capacity benchmark.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ops.load_stats import Recorder

CITIES = ("Berlin", "Lisbon", "Madrid", "Paris", "Vienna", "Warsaw", "Prague", "Dublin")
MIN_PRICES = (100_000, 250_000, 500_000, 1_000_000)
PAGE = 20
RECENT = 50  # properties a user remembers from the lists it saw
BACKOFF = 0.1  # seconds a user waits after a failed connection, even with no think time


@dataclass
class Writes:
    """The account writers log in as, shared by all users; ``off`` once writing failed."""

    email: str = ""
    password: str = ""
    off: str | None = None

    @classmethod
    def as_(cls, email: str, password: str) -> Writes:
        return cls(email=email, password=password)

    def disable(self, reason: str) -> None:
        if self.off is None:  # said once: the first reason is the one that matters
            self.off = reason


class Pacer:
    """At most ``rate`` requests per second over all users (``None``: no limit).

    Each request takes the next free slot, ``1/rate`` after the previous one; one event loop
    runs every user, so no lock is needed.
    """

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class User:
    client: httpx.AsyncClient
    recorder: Recorder
    rng: random.Random
    mix: Mapping[str, float]
    think: tuple[float, float]
    pacer: Pacer
    writes: Writes
    seen: list[int] = field(default_factory=list)
    own: list[int] = field(default_factory=list)
    tokens: dict[str, str] | None = None

    async def run(self, *, until: float) -> None:
        names, weights = list(self.mix), list(self.mix.values())
        while time.monotonic() < until:
            await self.pacer.wait()
            if time.monotonic() >= until:
                return
            failed = not await self.act(self.rng.choices(names, weights)[0])
            pause = self.rng.uniform(*self.think)
            if failed:
                pause = max(pause, BACKOFF)
            await asyncio.sleep(max(0.0, min(pause, until - time.monotonic())))

    async def act(self, operation: str) -> bool:
        """Do ``operation`` (or what it needs first); False when no answer came."""
        if operation in ("login", "refresh", "create", "update") and self.writes.off:
            self.recorder.skip(operation)
            return True
        if operation == "view" and not self.seen:
            operation = "browse"
        if operation in ("create", "update") and self.tokens is None:
            operation = "login"
        if operation == "refresh" and self.tokens is None:
            operation = "login"
        if operation == "update" and not self.own:
            operation = "create"
        action = getattr(self, f"_{operation}")
        answered: bool = await action()
        return answered

    async def _send(self, name: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        began = time.monotonic()
        try:
            response = await self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.recorder.failure(name, seconds=time.monotonic() - began, kind=_kind(exc))
            return None
        self.recorder.record(name, seconds=time.monotonic() - began, status=response.status_code)
        return response

    async def _browse(self) -> bool:
        response = await self._send("browse", "GET", "/properties", params=self._filters())
        if response is not None and response.status_code == 200:
            found = [item["id"] for item in _json(response).get("items", [])]
            self.seen = (found + self.seen)[:RECENT]
        return response is not None

    def _filters(self) -> dict[str, Any]:
        rng = self.rng
        filters: dict[str, Any] = {"city": rng.choice(CITIES), "limit": PAGE}
        if rng.random() < 0.7:
            filters["min_price"] = rng.choice(MIN_PRICES)
        if rng.random() < 0.2:
            filters["bedrooms"] = rng.randint(1, 4)
        # Most people stay on the first page; fewer and fewer go on.
        page = min(int(rng.expovariate(1.5)), 4)
        if page:
            filters["offset"] = page * PAGE
        return filters

    async def _view(self) -> bool:
        found = self.rng.choice(self.seen)
        response = await self._send("view", "GET", f"/properties/{found}")
        if response is not None and response.status_code == 404:
            self.seen.remove(found)  # deleted meanwhile: a person would not click it again
        return response is not None

    async def _login(self) -> bool:
        body = {"email": self.writes.email, "password": self.writes.password}
        response = await self._send("login", "POST", "/auth/login", json=body)
        if response is None:
            return False
        if response.status_code == 200:
            self.tokens = _pair(response)
        elif response.status_code in (401, 403, 404):
            self.writes.disable(
                f"writes skipped: logging in as {self.writes.email} answered"
                f" {response.status_code}; give --email and --password of a user allowed to write"
            )
        return True

    async def _refresh(self) -> bool:
        assert self.tokens is not None
        body = {"refresh_token": self.tokens["refresh_token"]}
        response = await self._send("refresh", "POST", "/auth/refresh", json=body)
        if response is None:
            return False
        self.tokens = _pair(response) if response.status_code == 200 else None
        return True

    def _auth(self) -> dict[str, str]:
        assert self.tokens is not None
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    async def _create(self) -> bool:
        response = await self._send(
            "create", "POST", "/properties", json=self._listing(), headers=self._auth()
        )
        return self._written(response)

    async def _update(self) -> bool:
        found = self.rng.choice(self.own)
        body = {"price": self.rng.randrange(80_000, 2_500_000, 500)}
        response = await self._send(
            "update", "PATCH", f"/properties/{found}", json=body, headers=self._auth()
        )
        if response is not None and response.status_code == 404:
            self.own.remove(found)
        return self._written(response)

    def _written(self, response: httpx.Response | None) -> bool:
        if response is None:
            return False
        if response.status_code == 201 and "id" in (body := _json(response)):
            self.own.append(body["id"])
        elif response.status_code == 401:
            self.tokens = None  # the access token expired: log in again next time
        return True

    def _listing(self) -> dict[str, Any]:
        rng = self.rng
        bedrooms = rng.randint(0, 5)
        city = rng.choice(CITIES)
        return {
            "title": f"Load-test listing with {bedrooms} bedrooms in {city}",
            "city": city,
            "address": f"{rng.randint(1, 250)} Load St",
            "price": rng.randrange(80_000, 2_500_000, 500),
            "bedrooms": bedrooms,
            "bathrooms": max(1, bedrooms // 2),
            "area_sqft": 300 + bedrooms * rng.randint(200, 450),
        }


def _json(response: httpx.Response) -> dict[str, Any]:
    # Whatever answers (a proxy's error page, another service) must not stop the user.
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _pair(response: httpx.Response) -> dict[str, str] | None:
    body = _json(response)
    return body if {"access_token", "refresh_token"} <= body.keys() else None


def _kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connection"
    return "other"
