"""The API's traffic model as a load generator: users who browse, open, log in and write.

    summary = await run_load(LoadOptions(url="http://127.0.0.1:8000", users=20, seconds=30))
    print(summary.total.per_second, summary.total.p95_ms)

Each user is an asyncio task on one shared ``httpx.AsyncClient`` (at most ``connections``
connections). A user picks an operation by the ``mix`` weights, sends it, then thinks for
``think`` seconds (uniform between the two bounds), as the capacity benchmark's users do:
``browse`` (a list filtered by city, often a minimum price, sometimes bedrooms, now and then
a later page), ``view`` (one of the properties it has seen), ``login``, ``refresh`` (rotate
its refresh token), ``create`` and ``update`` (a property it created). With ``rate`` the
whole run sends at most that many requests per second (a shared pacer).

Any user may write, but only its own listings: writes log in as ``email``/``password``, or,
without them, as an account registered at start. When that fails (registration closed,
wrong password) the writes are skipped, counted and said once in the summary's notes.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ops.load_stats import LoadSummary, Recorder
from ops.load_user import Pacer, User, Writes

OPERATIONS = ("browse", "view", "login", "refresh", "create", "update")
SESSION_OPERATIONS = ("login", "refresh", "create", "update")
DEFAULT_MIX: Mapping[str, float] = {
    "browse": 63,
    "view": 27,
    "login": 2,
    "refresh": 2,
    "create": 2,
    "update": 4,
}
"""Read-heavy: 90 % reads, split 70/30 between lists and single properties as in the
capacity benchmark; the rest sessions and writes."""


class LoadError(Exception):
    """Bad options or an unreachable target: the message says which."""


@dataclass(frozen=True)
class LoadOptions:
    """What to run; ``check()`` says what is wrong before anything is sent."""

    url: str
    users: int = 10
    seconds: float = 30.0
    rate: float | None = None
    think: tuple[float, float] = (0.5, 1.5)
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    seed: int | None = None
    timeout: float = 10.0
    connections: int | None = None
    email: str | None = None
    password: str | None = None

    def check(self) -> None:
        problems = [
            *_url_problems(self.url),
            *(["users must be at least 1"] if self.users < 1 else []),
            *(["duration must be more than 0 s"] if not self.seconds > 0 else []),
            *(
                ["rate must be more than 0 requests/s"]
                if self.rate is not None and not self.rate > 0
                else []
            ),
            *_think_problems(self.think),
            *_mix_problems(self.mix),
            *(["timeout must be more than 0 s"] if not self.timeout > 0 else []),
            *(["connections must be at least 1"] if (self.connections or 1) < 1 else []),
            *(
                ["give both --email and --password, or neither"]
                if (self.email is None) != (self.password is None)
                else []
            ),
        ]
        if problems:
            raise LoadError("; ".join(problems))


def _url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"url must look like http://host:port, not {url!r}"]
    return []


def _think_problems(think: tuple[float, float]) -> list[str]:
    low, high = think
    if low < 0 or high < low:
        return ["think time must be MIN-MAX seconds with 0 <= MIN <= MAX"]
    return []


def _mix_problems(mix: Mapping[str, float]) -> list[str]:
    unknown = sorted(set(mix) - set(OPERATIONS))
    if unknown:
        return [
            f"unknown operation(s) in mix: {', '.join(unknown)} (known: {', '.join(OPERATIONS)})"
        ]
    if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
        return ["mix weights must be >= 0 and not all 0"]
    return []


Progress = Callable[[Recorder, float], None]


async def run_load(options: LoadOptions, *, progress: Progress | None = None) -> LoadSummary:
    """Run ``options``; ``progress(recorder, elapsed)`` is called about once a second.

    Raises ``LoadError`` for bad options or when the API does not answer ``/healthz``.
    """
    options.check()
    recorder = Recorder()
    limits = httpx.Limits(max_connections=options.connections or min(options.users, 100))
    async with httpx.AsyncClient(
        base_url=options.url.rstrip("/"), timeout=options.timeout, limits=limits
    ) as client:
        await _reachable(client, options.url, recorder)
        writes = await _account(client, options, recorder)
        started = time.monotonic()
        deadline = started + options.seconds
        pacer = Pacer(options.rate)
        seeds = random.Random(options.seed)  # noqa: S311 - traffic shape, not security
        users = [
            User(
                client=client,
                recorder=recorder,
                rng=random.Random(seeds.getrandbits(64)),  # noqa: S311
                mix=options.mix,
                think=options.think,
                pacer=pacer,
                writes=writes,
            )
            for _ in range(options.users)
        ]
        async with asyncio.TaskGroup() as tasks:
            for user in users:
                tasks.create_task(user.run(until=deadline))
            if progress is not None:
                tasks.create_task(_tick(progress, recorder, started, deadline))
        elapsed = time.monotonic() - started
    notes = [writes.off] if writes.off else []
    return recorder.summary(url=options.url, seconds=elapsed, users=options.users, notes=notes)


async def _tick(progress: Progress, recorder: Recorder, started: float, deadline: float) -> None:
    while (now := time.monotonic()) < deadline:
        await asyncio.sleep(min(1.0, deadline - now))
        progress(recorder, time.monotonic() - started)


async def _reachable(client: httpx.AsyncClient, url: str, recorder: Recorder) -> None:
    began = time.monotonic()
    try:
        response = await client.get("/healthz")
    except httpx.HTTPError as exc:
        raise LoadError(f"cannot reach {url}: {type(exc).__name__}") from None
    # Recorded like any request, so the summary adds up to what the server counted.
    recorder.record("health", seconds=time.monotonic() - began, status=response.status_code)
    if response.status_code != 200:
        raise LoadError(f"{url}/healthz answered {response.status_code}: is this dynoscope?")


async def _account(client: httpx.AsyncClient, options: LoadOptions, recorder: Recorder) -> Writes:
    """The account writers log in as; registered now when none was given."""
    if not any(options.mix.get(name, 0) for name in SESSION_OPERATIONS):
        return Writes()  # a read-only mix needs no account
    if options.email is not None and options.password is not None:
        return Writes.as_(options.email, options.password)
    # A fresh address per run: the password only lives in this process.
    email = f"load-{uuid.uuid4().hex[:12]}@example.com"
    password = uuid.uuid4().hex
    began = time.monotonic()
    try:
        response = await client.post("/auth/register", json={"email": email, "password": password})
    except httpx.HTTPError as exc:
        recorder.failure("register", seconds=time.monotonic() - began, kind="connection")
        return Writes(off=f"writes skipped: registering a load user failed ({type(exc).__name__})")
    recorder.record("register", seconds=time.monotonic() - began, status=response.status_code)
    if response.status_code != 201:
        return Writes(
            off=f"writes skipped: registration answered {response.status_code};"
            " give --email and --password of a user allowed to write"
        )
    return Writes.as_(email, password)
