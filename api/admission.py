"""Admission control: at most ``max_in_flight`` requests at a time, the next ones waiting a
little for a slot, the rest answered 503 at once.

A worker that accepts every request queues them all on one event loop, and past its capacity
every request gets slow together until clients time out. Refusing the excess at the door
keeps the admitted ones fast and tells the others, cheaply, to come back (``Retry-After``),
which a load balancer or client can act on.

Refusing by count alone refuses work the worker could have done in time: a burst of users
arriving in the same instant finds every slot taken for a few milliseconds. So a request that
finds the slots full waits, first come first served, up to ``max_wait`` (a small share of the
latency target) for one to free, and is shed only when it would wait longer, or at once when
``max_queue`` requests are already waiting: shedding by queueing delay, as CoDel and the SRE
book's "Handling Overload" do. A sustained overload still sheds fast; a burst the worker can
drain within ``max_wait`` is served whole.

A request is in flight from admission until its response starts: an open stream (server-sent
events) stops counting once its headers are out, since waiting for events costs nothing.
Health checks and ``/metrics`` are never refused: the service must stay observable precisely
when it is overloaded. Requests that hash a password (``apart``: sign-in, registration) are a
class of their own: not counted here, bounded where they spend (``api.security.Passwords``),
so a storm of them is refused while reads go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OVERLOAD = "overload"
ALWAYS_ADMITTED = frozenset({"/healthz", "/readyz", "/metrics"})

Rejected = Callable[[str], None]
Waited = Callable[[float], None]


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
        max_wait: float = 0.0,
        max_queue: int = 0,
        on_wait: Waited | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.max_wait = max_wait
        self.max_queue = max_queue
        # Who waits for a slot, in order; a slot freed goes to the first still waiting.
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._queued = 0
        self._on_wait = on_wait
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
        if self.in_flight < self.max_in_flight:
            self.in_flight += 1
        elif not await self._wait_for_slot():
            await self._refuse(send)
            return
        counted = True

        async def answering(message: Message) -> None:
            nonlocal counted
            if counted and message["type"] == "http.response.start":
                counted = False
                self._release()
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            if counted:
                self._release()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._queued

    def _release(self) -> None:
        """A slot frees: it passes to the first request still waiting, or is counted free."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # in flight now, in the slot just freed
                return
        self.in_flight -= 1

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """Out of the queue, so a request stuck in every slot does not let it grow."""
        waiter.cancel()
        with contextlib.suppress(ValueError):  # already taken off by a release
            self._waiting.remove(waiter)

    async def _wait_for_slot(self) -> bool:
        """Wait up to ``max_wait`` for a slot; False when the queue is full or none frees."""
        if self.max_wait <= 0 or self.waiting >= self.max_queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._queued += 1
        started = time.perf_counter()
        try:
            await asyncio.wait((waiter,), timeout=self.max_wait)
        except BaseException:  # the client went away while waiting
            if waiter.done() and not waiter.cancelled():
                self._release()  # it was given a slot it will not use
            else:
                self._leave(waiter)
            raise
        finally:
            self._queued -= 1
        admitted = waiter.done() and not waiter.cancelled()
        if not admitted:
            self._leave(waiter)  # no slot came in time; a slot freed from now on skips it
        if self._on_wait is not None:
            self._on_wait(time.perf_counter() - started)
        return admitted

    async def _refuse(self, send: Send) -> None:
        if self._on_reject is not None:
            self._on_reject(OVERLOAD)
        await send({"type": "http.response.start", "status": 503, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._refusal})
