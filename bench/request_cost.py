"""Instrumentation cost per request, in process: no load generator, no network noise.

The cached ``GET /properties/1`` is sent 1,000 times through the ASGI interface, best of five
batches, for each configuration in turn (twice, alternating), on the embedded stack. The
differences are the instrumentation's own CPU cost per request, which wrk on a small shared
machine cannot resolve below ~10 %.

    python -m bench request_cost
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time

import httpx

from api.app import create_app
from api.migrate import upgrade
from api.seed import seed
from api.settings import Settings

BATCH = 1_000
BATCHES = 5
OFF = {"DYNOSCOPE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
CONFIGURATIONS = [
    ("no instrumentation", OFF),
    ("metrics only", {"OTEL_SDK_DISABLED": "true"}),
    ("default (metrics + 10 % traces)", {}),
    ("metrics + 100 % traces", {"OTEL_TRACES_SAMPLER": "always_on"}),
]


async def cost(extra: dict[str, str]) -> float:
    """Best per-request wall time in µs over BATCHES batches of BATCH requests."""
    with tempfile.TemporaryDirectory() as directory:
        environ = {
            "DATABASE_URL": f"sqlite:///{directory}/bench.db",
            "DYNOSCOPE_TRACES_FILE": f"{directory}/traces.jsonl",
            **extra,
        }
        app = create_app(Settings.from_env(environ))
        async with app.router.lifespan_context(app):
            await upgrade(app.state.services.engine)
            await seed(app.state.services.sessions, properties=5, demo_password="bench-password")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                for _ in range(200):  # warm the cache and the label children
                    await client.get("/properties/1")
                best = float("inf")
                for _ in range(BATCHES):
                    started = time.perf_counter()
                    for _ in range(BATCH):
                        await client.get("/properties/1")
                    best = min(best, (time.perf_counter() - started) / BATCH)
    return best * 1e6


def main() -> None:
    logging.disable(logging.WARNING)  # the embedded-mode notice, once per app
    results: dict[str, list[float]] = {name: [] for name, _ in CONFIGURATIONS}
    for _ in range(2):
        for name, extra in CONFIGURATIONS:
            results[name].append(asyncio.run(cost(extra)))
    logging.disable(logging.NOTSET)
    base = min(results["no instrumentation"])
    print(f"cached GET /properties/1 over ASGI, best of {BATCHES} x {BATCH}, two passes")
    print(f"{'configuration':<34} {'µs/request':>11} {'added µs':>9} {'ratio':>6}")
    for name, values in results.items():
        best = min(values)
        print(f"{name:<34} {best:>11.1f} {best - base:>9.1f} {base / best:>6.2f}")


if __name__ == "__main__":
    main()
