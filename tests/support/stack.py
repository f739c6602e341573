"""Start the API in-process on a chosen stack and talk to it over ASGI or a real socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from api.app import create_app
from api.migrate import upgrade
from api.services import Services
from api.settings import Settings
from deploy.native.topology import free_port


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


@contextlib.asynccontextmanager
async def running_app(environ: Mapping[str, str]) -> AsyncIterator[Running]:
    """The app with its lifespan, migrations applied, and an ASGI client."""
    async with running_app_without_migrations(environ, migrate=True) as running:
        yield running


@contextlib.asynccontextmanager
async def running_app_without_migrations(
    environ: Mapping[str, str], *, migrate: bool = False
) -> AsyncIterator[Running]:
    """The app with its lifespan and an ASGI client (its database may not even exist)."""
    app = create_app(Settings.from_env(environ))
    async with app.router.lifespan_context(app):
        if migrate:
            await upgrade(app.state.services.engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield Running(app=app, client=client)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int) -> AsyncIterator[None]:
    """Run ``app`` under uvicorn on a loopback ``port`` until the block ends."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,  # as `dynoscope serve`: the app decides whom to believe
        # Open event streams end with the server instead of holding its shutdown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield
    finally:
        await _stop(server, task)


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop ``server`` within bounded time, even when the test failed or was cancelled.

    A graceful exit first; then uvicorn's forced exit; then the task is cancelled. A
    cancellation arriving during teardown moves on to the next step instead of leaving the
    server running (its port, lifespan and files still in use by the next test), and is
    raised again once the server is down.
    """
    server.should_exit = True
    interrupted = False
    for escalate in ("graceful", "force", "cancel"):
        if escalate == "force":
            server.force_exit = True
        elif escalate == "cancel":
            task.cancel()
        try:
            done, _ = await asyncio.wait({task}, timeout=5)
        except asyncio.CancelledError:
            interrupted = True
            continue
        if done:
            break
    if interrupted:
        raise asyncio.CancelledError
    if task.done() and not task.cancelled():
        task.result()


@contextlib.asynccontextmanager
async def served_app(environ: Mapping[str, str]) -> AsyncIterator[Running]:
    """The app behind a real uvicorn server on a loopback port (for streaming responses)."""
    app = create_app(Settings.from_env(environ))
    port = free_port()
    async with serving(app, port):
        await upgrade(app.state.services.engine)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield Running(app=app, client=client)
