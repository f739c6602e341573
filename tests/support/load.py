"""Steady traffic from a few users with think time, run on a loop in a thread of its own.

>>> with Background() as background:  # doctest: +SKIP
...     users = background.users("http://127.0.0.1:8080", count=4, think=0.25)
...     time.sleep(5); users.stop()
...     ok = [s for s in users.samples if s.status == 200]

Each user registers and logs in once, then reads lists (by city and page) and single
properties, and now and then creates a property (``write_every``), pausing ``think`` seconds
between requests. Every answer is recorded (status 0: no answer at all), so a test can count
failures and latencies in any time span. Sync tests drive it; the loop runs the users and any
async server (the webhook receiver) beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.support.users import PASSWORD, listing, register_and_login

CITIES = ["Berlin", "Lisbon", "Madrid", "Paris", "Vienna", "Warsaw", "Prague", "Dublin"]
T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the answer came
    method: str
    status: int  # 0: transport error, no answer
    seconds: float
    error: str = ""  # a 5xx answer's error code, e.g. "overloaded" (admission control)

    @property
    def shed(self) -> bool:
        return self.status == 503 and self.error == "overloaded"


@dataclass
class Users:
    """A group of users; ``stop`` ends them (from the test's thread)."""

    samples: list[Sample] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None

    def since(self, start: float, until: float | None = None) -> list[Sample]:
        end = time.monotonic() if until is None else until
        return [s for s in list(self.samples) if start <= s.at <= end]

    def stop(self) -> None:
        assert self.loop is not None
        for task in self.tasks:
            self.loop.call_soon_threadsafe(task.cancel)


def p95(samples: list[Sample]) -> float:
    durations = sorted(s.seconds for s in samples)
    return durations[int(0.95 * (len(durations) - 1))] if durations else float("nan")


class Background:
    """An event loop in a daemon thread for the session's async helpers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._exits = contextlib.AsyncExitStack()

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._exits.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def enter(self, context: contextlib.AbstractAsyncContextManager[T]) -> T:
        """Enter an async context manager on the loop; it is left when the loop stops."""
        return self.run(self._exits.enter_async_context(context))

    def users(
        self,
        base_url: str,
        *,
        count: int,
        think: float,
        write_every: int = 0,
        login: bool = True,
        logins: bool = False,
    ) -> Users:
        """Start ``count`` users against ``base_url`` (every ``write_every``-th request a
        create, 0: never; ``login=False``: anonymous readers; ``logins``: every request a
        new login, whose password check runs in a thread: a login storm)."""
        users = Users(loop=self.loop)

        async def start() -> None:
            client = httpx.AsyncClient(
                base_url=base_url,
                timeout=30,
                limits=httpx.Limits(max_connections=count + 4, max_keepalive_connections=count),
            )
            self._exits.push_async_callback(client.aclose)
            for number in range(count):
                user = _user(
                    client, users.samples, think, write_every, login or logins, logins,
                    seed=number,
                )  # fmt: skip
                users.tasks.append(asyncio.create_task(user))

        self.run(start())
        return users


async def _user(
    client: httpx.AsyncClient,
    samples: list[Sample],
    think: float,
    write_every: int,
    login: bool,
    logins: bool,
    *,
    seed: int,
) -> None:
    rng = random.Random(seed)
    account = await _logged_in(client) if login else {}
    headers = account.get("headers", {})
    credentials = {"email": account.get("email"), "password": PASSWORD}
    for number in itertools.count():
        write = write_every > 0 and number % write_every == write_every - 1
        if write:
            request = _request(client.post, "/properties", json=listing(), headers=headers)
        elif logins:
            request = _request(client.post, "/auth/login", json=credentials)
        elif rng.random() < 0.7:
            request = _request(client.get, f"/properties?city={rng.choice(CITIES)}&limit=20")
        else:
            request = _request(client.get, f"/properties/{rng.randint(1, 20)}")
        samples.append(await request)
        if think:
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))  # pacing, not waiting


async def _logged_in(client: httpx.AsyncClient) -> dict[str, Any]:
    """Register and log in, retrying while the stack is busy (a fault may be on)."""
    for _ in range(100):
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            return await register_and_login(client)
        await asyncio.sleep(0.5)
    raise RuntimeError("no user could register")


async def _request(method: Callable[..., Any], path: str, **kwargs: Any) -> Sample:
    started = time.monotonic()
    name = method.__name__.upper()
    error = ""
    try:
        response = await method(path, **kwargs)
        status = response.status_code
        if status >= 500:
            with contextlib.suppress(ValueError, AttributeError):
                error = str(response.json().get("error", ""))
    except httpx.HTTPError:
        status = 0
    now = time.monotonic()
    return Sample(at=now, method=name, status=status, seconds=now - started, error=error)
