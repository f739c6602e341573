"""``dynoscope alerts run`` processes for tests, and a webhook that counts what it is sent."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.stack import free_port, serving

Key = tuple[str, str]


@dataclass
class CountingReceiver:
    """A webhook that counts every (dedup key, status) it is sent and holds each request."""

    url: str
    received: list[Key] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # each alert as sent
    in_flight: Counter[Key] = field(default_factory=Counter)

    def counts(self) -> Counter[Key]:
        return Counter(self.received)


@contextlib.asynccontextmanager
async def counting_receiver(hold: float = 0.0) -> AsyncIterator[CountingReceiver]:
    port = free_port()
    receiver = CountingReceiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        body = await request.json()
        keys = [(alert["fingerprint"], alert["status"]) for alert in body["alerts"]]
        receiver.received.extend(keys)
        receiver.alerts.extend(body["alerts"])
        receiver.in_flight.update(keys)
        try:
            await asyncio.sleep(hold)
        finally:
            receiver.in_flight.subtract(keys)
        return Response(status_code=200)

    async with serving(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), port):
        yield receiver


@contextlib.contextmanager
def engines(
    count: int,
    environ: dict[str, str],
    directory: Path,
    each: Callable[[int], dict[str, str]] = lambda number: {},
    first: int = 0,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` ``dynoscope alerts run`` processes, engine ``n`` with ``each(n)`` added to
    ``environ`` and its output in ``engine-n.log`` (``n`` from ``first``); stopped (SIGTERM,
    then SIGKILL) after."""
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for number in range(first, first + count):
            log = (directory / f"engine-{number}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "dynoscope", "alerts", "run"],
                    env={**environ, **each(number)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def logs(directory: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(directory.glob("engine-*.log")))
