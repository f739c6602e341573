"""The API served on a loopback port, a real webhook receiver, and what tests wait with.

Slow queries are made the way production makes them, by another client holding the
listings table (``tests/support/locks.py``), not by a route of the test's. One route is
added to this test app: ``/test/error`` answers 500, for traffic with server errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from alerts.rules.loader import DEFAULT_RULES
from api.app import create_app
from api.migrate import upgrade
from api.settings import Settings
from tests.support.stack import free_port, serving

ERROR_ROUTE = "/test/error"


async def server_error() -> Response:
    return Response(status_code=500)


@contextlib.asynccontextmanager
async def in_background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``coroutines`` (endless traffic loops) until the block exits, then cancel them.

    A loop that failed on its own (not by the cancellation) fails the test with its error.
    """
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [
        outcome
        for outcome in outcomes
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError)
    ]
    if failures:
        raise failures[0]


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def served_api(
    environ: Mapping[str, str], *, before_start: Callable[[FastAPI], None] | None = None
) -> AsyncIterator[Served]:
    """The API with the error route, behind uvicorn, migrated."""
    app = create_app(Settings.from_env(environ))
    app.add_api_route(ERROR_ROUTE, server_error, methods=["GET"])
    if before_start is not None:
        before_start(app)
    port = free_port()
    async with serving(app, port):
        await upgrade(app.state.services.engine)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Served(app=app, client=client, port=port)


@dataclass
class Receiver:
    """Webhook bodies received, in order."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def seen(self, alertname: str, status: str) -> bool:
        return any(
            alert["labels"].get("alertname") == alertname and alert["status"] == status
            for body in self.bodies
            for alert in body["alerts"]
        )


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server on loopback that records what is posted to it."""
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        receiver.bodies.append(await request.json())
        return Response(status_code=200)

    async with serving(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), port):
        yield receiver


def rules_file(directory: Path, overrides: Mapping[str, Mapping[str, Any]]) -> Path:
    """The shipped rules named in ``overrides``, changed by them (test-sized windows and
    ``for``), in one group evaluated every second."""
    shipped = yaml.safe_load(DEFAULT_RULES.read_text())
    rules = [
        {**rule, **overrides[rule["alert"]]}
        for group in shipped["groups"]
        for rule in group["rules"]
        if rule["alert"] in overrides
    ]
    path = directory / "test-rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "test", "interval": "1s", "rules": rules}]})
    )
    return path


async def eventually(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.1)
