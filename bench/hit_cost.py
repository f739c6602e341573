"""CPU per cached hit, in process: the API against a bare FastAPI endpoint, same bytes.

Production stack (PostgreSQL + Redis on loopback, a database and key prefix of its own), the
app called straight through ASGI on uvloop, no server and no load generator: what is left is
the app's own CPU per request. ``GET /properties/1`` is sent in batches, alternating between
the bare endpoint and the API (instrumentation off, then default), one request at a time and
then 32 at a time (as a loaded server sees them: concurrent cache lookups share Redis round
trips), and the best batch of each counts (process CPU time, not wall time, so other work on
a shared machine adds little).
uvicorn's HTTP parsing and socket work, the same for both, come on top under a real server.

    python -m bench hit_cost                  # ~1 minute
    BENCH_BATCH=500 BENCH_ROUNDS=2 BENCH_CONCURRENCY=32 python -m bench hit_cost

For instruction counts, stable on a busy machine, run it under
``valgrind --tool=callgrind`` with two ``BENCH_BATCH`` values and divide the difference.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from typing import Any

import uvloop
from fastapi import FastAPI, Response
from starlette.types import ASGIApp, Message

from api.app import create_app
from api.settings import Settings
from bench.cache import _prepare as prepare
from bench.cache import _reachable as reachable
from bench.cache import database

PATH = "/properties/1"
OFF = {"DYNOSCOPE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
CONFIGURATIONS = [("instrumentation off", OFF), ("default instrumentation", {})]


def bare_app(body: bytes) -> FastAPI:
    """FastAPI returning ``body`` for ``/properties/{id}``: the floor for the same answer."""
    app = FastAPI()

    @app.get("/properties/{property_id}")
    async def get_property(property_id: int) -> Response:
        return Response(body, media_type="application/json")

    return app


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")],
        "state": {},
    }


async def get(app: ASGIApp) -> bytes:
    """One ``GET /properties/1`` through ``app``; its body (the status must be 200)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(), receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"{PATH} answered {sent[0]['status']}")
    return b"".join(m.get("body", b"") for m in sent[1:])


async def batch_cpu_us(app: ASGIApp, requests: int, concurrency: int = 1) -> float:
    """Process CPU µs per request over ``requests`` requests, ``concurrency`` at a time."""

    async def client(count: int) -> None:
        for _ in range(count):
            await get(app)

    started = time.process_time()
    await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (requests // concurrency * concurrency) * 1e6


async def compare(
    environ: dict[str, str], *, batch: int, rounds: int, concurrency: int
) -> dict[str, float]:
    """Best batch per configuration (and for the bare endpoint), batches alternating."""
    best: dict[str, float] = {}
    for name, extra in CONFIGURATIONS:
        app = create_app(Settings.from_env({**environ, **extra}))
        async with app.router.lifespan_context(app):
            body = await get(app)
            bare = bare_app(body)
            if await get(bare) != body:
                raise RuntimeError("the bare endpoint does not answer the same bytes")
            for target in (app, bare):
                for _ in range(200):  # warm: cache, connections, label children
                    await get(target)
            for _ in range(rounds):
                for label, target in (("bare FastAPI endpoint", bare), (name, app)):
                    cost = await batch_cpu_us(target, batch, concurrency)
                    best[label] = min(best.get(label, cost), cost)
    return best


def main() -> None:
    if not (reachable(5432) and reachable(6379)):
        print("hit_cost needs PostgreSQL and Redis on loopback (make services); skipping")
        return
    batch = int(os.environ.get("BENCH_BATCH", "2000"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    concurrencies = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,32").split(",")]
    logging.disable(logging.WARNING)
    try:
        with database() as environ, tempfile.TemporaryDirectory() as directory:
            asyncio.run(prepare(environ))
            env = {
                **environ,
                "DYNOSCOPE_ENV": "production",
                "JWT_SECRET": "hit-cost-bench-" + "x" * 32,
                "LOG_LEVEL": "WARNING",
                "DYNOSCOPE_TRACES_FILE": f"{directory}/traces.jsonl",
            }
            results = {
                concurrency: uvloop.run(
                    compare(env, batch=batch, rounds=rounds, concurrency=concurrency)
                )
                for concurrency in concurrencies
            }
    finally:
        logging.disable(logging.NOTSET)
    for concurrency, best in results.items():
        bare = best["bare FastAPI endpoint"]
        print(
            f"cached GET {PATH} through ASGI, {concurrency} at a time, CPU per request,"
            f" best of {rounds} x {batch}"
        )
        for label, cost in best.items():
            print(f"{label:<26} {cost:>7.1f} µs  {cost / bare:>5.2f}x bare")


if __name__ == "__main__":
    main()
