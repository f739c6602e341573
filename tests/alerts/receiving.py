"""A real HTTP server on loopback that records JSON posts and answers as scripted."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.stack import free_port, serving


@dataclass
class Recording:
    """What was posted (path, body) in order; ``answers`` are used first, then 200/202."""

    base: str
    posts: list[tuple[str, Any]] = field(default_factory=list)
    answers: deque[Response] = field(default_factory=deque)
    status: int = 200

    def bodies(self, path: str) -> list[Any]:
        return [body for where, body in self.posts if where == path]


@contextlib.asynccontextmanager
async def recording_server(*, status: int = 200) -> AsyncIterator[Recording]:
    port = free_port()
    recording = Recording(base=f"http://127.0.0.1:{port}", status=status)

    async def record(request: Request) -> Response:
        recording.posts.append((request.url.path, await request.json()))
        if recording.answers:
            return recording.answers.popleft()
        return JSONResponse({"status": "success"}, status_code=recording.status)

    app = Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])
    async with serving(app, port):
        yield recording
