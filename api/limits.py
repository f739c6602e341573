"""Request body limit: an oversized body is refused with 413 and never kept in memory.

A client that sends its whole body before reading the answer (Python's ``urllib``, most
HTTP libraries) would see a connection reset instead of the 413 if the server closed the
connection with the body still arriving. So the rest of the body is read and thrown away, up
to ``drain_bytes``, before the 413 goes out; past that the connection is closed. A client
that asked to ``Expect: 100-continue`` has sent nothing yet and gets the 413 at once.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_DRAIN_BYTES = 16 * 1024 * 1024


class BodyLimit:
    """Pure ASGI middleware refusing bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, drain_bytes: int = DEFAULT_DRAIN_BYTES
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        expects_continue = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        if declared is not None and not 0 <= declared <= self.max_bytes:
            drained = False
            if not expects_continue and 0 < declared <= self.drain_bytes:
                drained = await self._drain(receive, 0)
            await self._refuse(send, close=not drained)
            return

        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Stop handing the body on; whatever the app answers is replaced below.
                    exceeded = True
                    if not message.get("more_body", False):
                        received = -1  # the whole body is in: nothing left to drain
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        refused = started = False

        async def guarded_send(message: Message) -> None:
            nonlocal refused, started
            if exceeded and not started:
                if not refused:
                    refused = True
                    drained = received < 0 or await self._drain(receive, received)
                    await self._refuse(send, close=not drained)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _drain(self, receive: Receive, already: int) -> bool:
        """Read and discard the rest of the body; False when it ran past ``drain_bytes``."""
        total = already
        while total <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return False
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return total <= self.drain_bytes
        return False

    async def _refuse(self, send: Send, *, close: bool) -> None:
        body = json.dumps(
            {
                "error": "payload_too_large",
                "detail": f"request body exceeds {self.max_bytes} bytes",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
