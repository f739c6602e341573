"""The command line's own lines, not its libraries': httpx, alembic and friends speak at
WARNING unless LOG_LEVEL=DEBUG; ``dynoscope load`` prints no line per request; ``serve`` says
where to look."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import re
import sys
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.logs import CHATTY, configure_logging
from api.settings import Settings
from dynoscope.cli import _where_to_look
from tests.support.stack import free_port, serving


@pytest.fixture
def levels() -> Iterator[None]:
    """Put the loggers this test changes back as they were."""
    before = {name: logging.getLogger(name).level for name in CHATTY}
    root = logging.getLogger().level
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().setLevel(root)


@pytest.mark.usefixtures("levels")
@pytest.mark.parametrize(("level", "quiet"), [("INFO", True), ("WARNING", True), ("debug", False)])
def test_libraries_speak_at_warning_unless_debug(level: str, quiet: bool) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET)
    configure_logging(level)
    expected = logging.WARNING if quiet else logging.NOTSET  # NOTSET: the root's DEBUG
    assert {logging.getLogger(name).level for name in CHATTY} == {expected}


async def test_load_prints_no_line_per_request() -> None:
    """Against a server that answers every request (an empty page: no listing to follow)."""
    app = Starlette(routes=[Route("/{path:path}", _anything, methods=["GET", "POST"])])
    port = free_port()
    async with serving(app, port):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dynoscope", "load", "--url", f"http://127.0.0.1:{port}",
            "--users", "2", "--duration", "2", "--no-progress",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    text = stderr.decode()
    assert "HTTP Request" not in text, text[-2000:]


def test_serve_says_where_to_look_without_printing_a_secret() -> None:
    development = _where_to_look(Settings.from_env({}), "http://127.0.0.1:8000", None)
    assert "http://127.0.0.1:8000/properties" in development
    assert "http://127.0.0.1:8000/docs" in development
    assert "http://127.0.0.1:8000/metrics" in development
    assert "set ADMIN_TOKEN for /alerts" in development
    token = "admin-" + "t" * 30
    production = Settings.from_env(
        {
            "DYNOSCOPE_ENV": "production",
            "JWT_SECRET": "j" * 40,
            "ADMIN_TOKEN": token,
            "METRICS_PORT": "9464",
        }
    )
    said = _where_to_look(production, "http://0.0.0.0:8000", None)
    assert "/docs" not in said and "/metrics" not in said  # off, or on a port of its own
    assert "http://0.0.0.0:8000/alerts (Bearer ADMIN_TOKEN)" in said
    assert token not in said


async def test_load_keeps_its_progress_line_on_a_terminal_and_drops_it_in_a_pipe() -> None:
    """On a terminal (a real pseudo-terminal) the status line is rewritten in place with
    nothing between its updates; piped, there is none."""
    app = Starlette(routes=[Route("/{path:path}", _anything, methods=["GET", "POST"])])
    port = free_port()
    argv = (
        sys.executable, "-m", "dynoscope", "load", "--url", f"http://127.0.0.1:{port}",
        "--users", "2", "--duration", "2.5",
    )  # fmt: skip
    async with serving(app, port):
        primary, secondary = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=secondary
            )
            os.close(secondary)
            await asyncio.wait_for(process.communicate(), timeout=60)
            terminal = _drain(primary)
        finally:
            os.close(primary)
        piped = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(piped.communicate(), timeout=60)
    updates = [part for part in terminal.split("\r") if part.strip()]
    assert len(updates) >= 2, terminal  # about one a second
    assert all(re.match(r"\s*[\d.]+ s\s+\d+ requests", part) for part in updates), terminal
    assert "\n" not in terminal.rstrip("\r\n"), terminal  # no other line breaks into it
    assert "requests" not in stderr.decode() and stderr.decode().strip() == "", stderr


async def _anything(request: Request) -> Response:
    """Any request answered: an empty page of listings, an empty object elsewhere."""
    return JSONResponse([] if request.url.path == "/properties" else {}, status_code=200)


def _drain(descriptor: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(descriptor, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
