"""Cache benchmark: database queries per 1,000 list requests, and cached vs uncached latency.

Run with ``make bench BENCH=cache`` (or ``python -m bench cache``). It uses PostgreSQL and
Redis on loopback when they answer (a fresh database and key prefix of its own), else the
embedded SQLite + in-process stack. Figures printed come from this one run.

1. Query counts: the same 1,000 list requests (a realistic mix of 96 distinct queries over
   2,000 listings) sent in-process with the cache off, with a cold cache, with a warm cache,
   and with a warm cache under one write per 100 reads.
2. Latency: ``wrk`` with 64 connections against a served instance, cache off and on, one
   after the other in this run; p50/p95/p99 and throughput, and their ratios.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event

from api.app import create_app
from api.migrate import upgrade
from api.seed import CITIES, seed
from api.settings import Settings

LISTINGS = 2_000
REQUESTS = 1_000
WRK_SECONDS = 8
WRK_CONNECTIONS = 64
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def request_mix(count: int, rng: random.Random) -> list[str]:
    """Paths a listings front end sends: popular cities and first pages dominate."""
    queries = []
    for city in CITIES:
        for band in ("", "&min_price=200000", "&max_price=900000", "&bedrooms=2"):
            for offset in (0, 20, 40):
                queries.append(f"/properties?city={city.lower()}{band}&offset={offset}")
    weights = [1 / (rank + 1) for rank in range(len(queries))]  # Zipf-like popularity
    return rng.choices(queries, weights=weights, k=count)


@contextmanager
def database() -> Iterator[dict[str, str]]:
    if (
        os.environ.get("BENCH_STACK", "shared") == "shared"
        and _reachable(5432)
        and _reachable(6379)
    ):
        name = f"dynoscope_bench_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        try:
            yield {
                "DATABASE_URL": f"{ADMIN_DSN}/{name}",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "REDIS_KEY_PREFIX": f"dynoscope-bench:{name}:",
            }
        finally:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        with tempfile.TemporaryDirectory() as directory:
            yield {"DATABASE_URL": f"sqlite:///{directory}/bench.db"}


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _prepare(environ: dict[str, str]) -> None:
    app = create_app(Settings.from_env(environ))
    async with app.router.lifespan_context(app):
        services = app.state.services
        await upgrade(services.engine)
        await seed(services.sessions, properties=LISTINGS, demo_password="bench-password")


async def count_queries(environ: dict[str, str], *, cache: bool, warm: bool, writes: int) -> int:
    """SELECTs on properties for REQUESTS list requests (plus ``writes`` writes spread in)."""
    env = {
        **environ,
        "CACHE_ENABLED": str(cache).lower(),
        "REDIS_KEY_PREFIX": environ.get("REDIS_KEY_PREFIX", "") + uuid.uuid4().hex[:6] + ":",
    }
    app = create_app(Settings.from_env(env))
    paths = request_mix(REQUESTS, random.Random(42))
    async with app.router.lifespan_context(app):
        engine = app.state.services.engine.sync_engine
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            headers = {}
            if writes:
                login = await client.post(
                    "/auth/login", json={"email": "demo@example.com", "password": "bench-password"}
                )
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            if warm:
                for path in set(paths):
                    await client.get(path)
            count = 0

            def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
                nonlocal count
                if statement.lstrip().upper().startswith("SELECT") and "properties" in statement:
                    count += 1

            event.listen(engine, "before_cursor_execute", record)
            every = REQUESTS // writes if writes else 0
            for index, path in enumerate(paths):
                if every and index % every == every - 1:
                    await client.patch(
                        f"/properties/{index % LISTINGS + 1}",
                        json={"price": 100000 + index},
                        headers=headers,
                    )
                response = await client.get(path)
                assert response.status_code == 200, response.text
            event.remove(engine, "before_cursor_execute", record)
    return count


WRK_SCRIPT = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%.3f %%d\\n", summary.requests,
    summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.timeout))
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def latency(environ: dict[str, str], *, cache: bool, workdir: Path) -> dict[str, float]:
    port = _free_port()
    env = {
        **os.environ,
        **environ,
        "CACHE_ENABLED": str(cache).lower(),
        "LOG_LEVEL": "WARNING",
        "DYNOSCOPE_ENV": "test",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "dynoscope", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _reachable(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("bench server did not start")
            time.sleep(0.1)
        paths = sorted(set(request_mix(REQUESTS, random.Random(42))))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for path in paths:  # warm the cache (and the connection pool) first
                client.get(path)
        script = workdir / "mix.lua"
        script.write_text(WRK_SCRIPT % ", ".join(f'"{p}"' for p in paths))
        output = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(WRK_CONNECTIONS),
                "-d",
                f"{WRK_SECONDS}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=WRK_SECONDS + 30,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    requests, duration_us, p50, p95, p99, errors = line.split()[1:]
    return {
        "rps": int(requests) / (int(duration_us) / 1e6),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "errors": int(errors),
    }


def main() -> None:
    with database() as environ:
        stack = "PostgreSQL + Redis" if "REDIS_URL" in environ else "SQLite + in-process cache"
        print(f"stack: {stack}; {LISTINGS} listings; {REQUESTS} list requests, 96 distinct")
        asyncio.run(_prepare(environ))
        rows = [  # name, cache, warm, writes
            ("cache off", False, False, 0),
            ("cache on, cold", True, False, 0),
            ("cache on, warm", True, True, 0),
            ("cache on, warm, 1 write per 100 reads", True, True, 10),
        ]
        counts = {
            name: asyncio.run(count_queries(environ, cache=cache, warm=warm, writes=writes))
            for name, cache, warm, writes in rows
        }
        base = counts["cache off"]
        print(f"\n{'scenario':<40} {'queries/1000 req':>17} {'reduction':>10}")
        for name, count in counts.items():
            reduction = f"{base / count:.0f}x" if count else "all"
            print(f"{name:<40} {count:>17} {reduction:>10}")

        if shutil.which("wrk") is None:
            print("\nwrk not installed (apt-get install wrk): latency part skipped")
            return
        with tempfile.TemporaryDirectory() as workdir:
            off = latency(environ, cache=False, workdir=Path(workdir))
            on = latency(environ, cache=True, workdir=Path(workdir))
        print(f"\nwrk, {WRK_CONNECTIONS} connections, {WRK_SECONDS}s, one uvicorn worker")
        print(f"{'':<12} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, result in (("cache off", off), ("cache on", on)):
            print(
                f"{name:<12} {result['rps']:>9.0f} {result['p50']:>8.1f} {result['p95']:>8.1f}"
                f" {result['p99']:>8.1f} {result['errors']:>7}"
            )
        print(
            f"{'on/off':<12} {on['rps'] / off['rps']:>8.2f}x {on['p50'] / off['p50']:>8.2f}"
            f" {on['p95'] / off['p95']:>8.2f} {on['p99'] / off['p99']:>8.2f}"
        )


if __name__ == "__main__":
    main()
