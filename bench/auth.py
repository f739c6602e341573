"""CPU per sign-in attempt: accepted, refused by the password check, refused by a rate limit.

Production stack (PostgreSQL + Redis on loopback, a database and key prefix of its own), the
app called through ASGI in process (no server): what is left is the app's own CPU per
attempt, threads included (the argon2 check runs in one). Three kinds of ``POST /auth/login``
for the demo account, in alternating rounds, best round of each:

- accepted: the right password (a hash check, a refresh token written);
- bad credentials: a wrong password (a hash check, counted against the limits), each from
  an address of its own so no limit is reached;
- rate limited: a wrong password from an address past its limit (429, no hash).

The ratio is each kind's CPU over the accepted login's: what a throttled guess costs the
service next to a real sign-in.

    python -m bench auth                      # ~1 minute
    BENCH_BATCH=20 BENCH_ROUNDS=3 python -m bench auth
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable

import httpx

from api.app import create_app
from api.settings import Settings
from bench.cache import _prepare as prepare
from bench.cache import _reachable as reachable
from bench.cache import database

DEMO = "demo@example.com"
PASSWORD = "bench-password"
LIMITS = {
    "AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT": "3/hour",
    "AUTH_LOGIN_FAILURES_PER_CLIENT": "1000000/hour",
    "AUTH_LOGIN_FAILURES_PER_ACCOUNT": "1000000/hour",
    "MAX_IN_FLIGHT_AUTH": "64",
    "OTEL_SDK_DISABLED": "true",
}


async def _cpu_per_attempt(
    attempt: Callable[[int], Awaitable[int]], count: int, want: int
) -> float:
    started = time.process_time()
    for number in range(count):
        status = await attempt(number)
        assert status == want, f"expected {want}, got {status}"
    return (time.process_time() - started) / count * 1e6


async def measure(environ: dict[str, str], *, batch: int, rounds: int) -> dict[str, float]:
    app = create_app(Settings.from_env({**environ, **LIMITS}))
    addresses = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))
    async with app.router.lifespan_context(app):

        async def login(address: str, password: str) -> int:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                body = {"email": DEMO, "password": password}
                return (await client.post("/auth/login", json=body)).status_code

        throttled = next(addresses)
        for _ in range(3):  # spend its limit
            await login(throttled, "wrong-password")
        kinds: dict[str, tuple[Callable[[int], Awaitable[int]], int]] = {
            "accepted (right password)": (lambda n: login("10.255.0.1", PASSWORD), 200),
            "bad credentials (wrong password)": (
                lambda n: login(next(addresses), "wrong-password"),
                401,
            ),
            "rate limited (429, no hash)": (lambda n: login(throttled, "wrong-password"), 429),
        }
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, (attempt, want) in kinds.items():
                cpu = await _cpu_per_attempt(attempt, batch, want)
                best[name] = min(best.get(name, cpu), cpu)
    return best


def main() -> None:
    if not (reachable(5432) and reachable(6379)):
        print("auth needs PostgreSQL and Redis on loopback (make services); skipping")
        return
    batch = int(os.environ.get("BENCH_BATCH", "30"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    logging.disable(logging.WARNING)
    try:
        with database() as environ:
            asyncio.run(prepare(environ))
            best = asyncio.run(measure(environ, batch=batch, rounds=rounds))
    finally:
        logging.disable(logging.NOTSET)
    accepted = best["accepted (right password)"]
    print(
        "POST /auth/login in process, CPU per attempt (threads included), "
        f"best of {rounds} x {batch}"
    )
    print(f"{'attempt':<36} {'CPU/attempt':>12}  ratio to accepted")
    for name, cpu in best.items():
        print(f"{name:<36} {cpu:>10,.0f}µs  {cpu / accepted:8.3f}")
