"""Admission control: past a limit of requests in flight, answer 503 at once.

A worker that accepts every request queues them all on one event loop, and past its capacity
every request gets slow together until clients time out. Refusing the excess at the door
keeps the admitted ones fast and tells the others, cheaply, to come back (``Retry-After``),
which a load balancer or client can act on.

A request is in flight from admission until its response starts: an open stream (server-sent
events) stops counting once its headers are out, since waiting for events costs nothing.
Health checks and ``/metrics`` are never refused: the service must stay observable precisely
when it is overloaded. Requests that hash a password (``apart``: sign-in, registration) are a
class of their own: not counted here, bounded where they spend (``api.security.Passwords``),
so a storm of them is refused while reads go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OVERLOAD = "overload"
ALWAYS_ADMITTED = frozenset({"/healthz", "/readyz", "/metrics"})

Rejected = Callable[[str], None]


class AdmissionControl:
    """Pure ASGI middleware admitting at most ``max_in_flight`` requests at a time.

    >>> from starlette.applications import Starlette
    >>> app = AdmissionControl(Starlette(), max_in_flight=100, retry_after=1)
    >>> app.in_flight
    0
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        retry_after: int,
        on_reject: Rejected | None = None,
        always_admitted: Collection[str] = ALWAYS_ADMITTED,
        admitted_prefixes: tuple[str, ...] = (),
        apart: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        # Requests that each cost a password hash are a class of their own: not counted
        # here, bounded where the cost is (``Passwords``, MAX_IN_FLIGHT_AUTH), so a login
        # storm is refused in its class while reads are admitted in theirs.
        self._apart = frozenset(apart)
        self._on_reject = on_reject
        self._always = frozenset(always_admitted)
        # The admin console: on-call needs it most when the service is at capacity.
        self._admitted_prefixes = admitted_prefixes
        self._refusal = json.dumps(
            {
                "error": "overloaded",
                "detail": f"the server is at capacity ({max_in_flight} requests in flight); "
                f"retry after {retry_after} s",
            }
        ).encode()
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._refusal)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or path in self._always
            or path in self._apart
            or (bool(self._admitted_prefixes) and str(path).startswith(self._admitted_prefixes))
        ):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(send)
            return
        self.in_flight += 1
        counted = True

        async def answering(message: Message) -> None:
            nonlocal counted
            if counted and message["type"] == "http.response.start":
                counted = False
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            if counted:
                self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        if self._on_reject is not None:
            self._on_reject(OVERLOAD)
        await send({"type": "http.response.start", "status": 503, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._refusal})
