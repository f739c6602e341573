"""The console beside an engine that runs alone (``dynoscope alerts run``): a small ASGI app
on ``CONSOLE_PORT`` whose pages read that engine, served by uvicorn in the engine's own
event loop.

    async with engine_console(settings, port=9465)(monitor):
        ...   # the console answers on :9465 while the block runs
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi import FastAPI

from alerts.engine.monitor import Monitor
from alerts.engine.standalone import Pages
from alerts.http.state import engine_state
from api.client import NoSniff
from api.limits import BodyLimit
from api.settings import Mode, Settings
from api.workers import check_port_free
from console import mount_console

log = logging.getLogger("dynoscope.console")


class _Beside(uvicorn.Server):
    """A uvicorn server that leaves the signals to the engine's process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def engine_console(settings: Settings, *, token: str, port: int) -> Pages:
    """``Pages`` serving the console on ``port``; ``WorkersError`` now if the port is taken
    (uvicorn would exit the process from inside the engine's loop)."""
    check_port_free(settings.telemetry.host, port)

    @contextlib.asynccontextmanager
    async def serve(monitor: Monitor) -> AsyncIterator[None]:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        engine_state(app).monitor = monitor
        mount_console(
            app,
            admin_token=token,
            alerts=settings.alerts,
            traces_file=settings.telemetry.traces_file,
            secure_cookies=settings.mode is Mode.PRODUCTION,
        )
        # As on the API: nobody posts a sign-in form of megabytes, and no sniffing.
        app.add_middleware(NoSniff)
        app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
        config = uvicorn.Config(
            app, host=settings.telemetry.host, port=port, log_level="warning",
            access_log=False, lifespan="off",
        )  # fmt: skip
        server = _Beside(config)
        task = asyncio.create_task(server.serve(), name="console")
        log.info("console on http://%s:%d/console", settings.telemetry.host, port)
        try:
            yield
        finally:
            server.should_exit = True
            await task

    return serve
