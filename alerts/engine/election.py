"""Leader election over a ``StoreLease``: try for the lease, run the engine while it is held.

Every third of the lease's length ``step`` takes or renews the lease. On winning it the engine
is started (``on_elected``: load what the store holds, then evaluate and send); on losing it
(not renewed in time, or taken by another engine after it expired) the engine is stopped
(``on_deposed``). Sending stops earlier than that, by itself: the outbox sends only while
``lease.remaining()`` is positive, and cuts a send short when it is not.

    election = Election(lease, on_elected=start_engine, on_deposed=stop_engine)
    await election.step()          # the first attempt, before serving
    task = asyncio.create_task(election.run())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from alerts.metrics import EngineMetrics
from alerts.store.lease import StoreLease

log = logging.getLogger("dynoscope.alerts")


class Election:
    """Keeps one engine's claim on the lease, and tells it when it leads and when not."""

    def __init__(
        self,
        lease: StoreLease,
        *,
        on_elected: Callable[[], Awaitable[bool]],
        on_deposed: Callable[[], Awaitable[None]],
        prepare: Callable[[], Awaitable[None]] | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.lease = lease
        self._prepare = prepare
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._metrics = metrics
        self.leading = False
        self._unreachable = False
        self._woken = asyncio.Event()
        self._set_gauge()

    @property
    def period(self) -> float:
        """Seconds between two attempts: a third of the lease, so two may fail in a row."""
        return self.lease.ttl / 3

    def wake(self) -> None:
        """Try again now (e.g. the store refused a write: the lease is probably gone)."""
        self._woken.set()

    async def step(self) -> None:
        """One attempt at the lease, and whatever follows from its outcome."""
        try:
            if self._prepare is not None:
                # The lease row lives in the store's schema: migrate before the first attempt.
                await self._prepare()
                self._prepare = None
            async with asyncio.timeout(self.period):
                held = await self.lease.acquire()
            if self._unreachable:
                log.warning("alert store reachable again for the lease")
            self._unreachable = False
        except Exception as exc:
            # Unknown whether the renewal landed: act only for what is left of the last one.
            held = self.lease.remaining() > 0
            if not self._unreachable:
                reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                log.error("alert lease: the store did not answer (%s)", reason)
            self._unreachable = True
        if held and not self.leading:
            if await self._on_elected():
                self.leading = True
                log.warning("this engine leads (lease token %s)", self.lease.token)
            else:
                await self._release_quietly()
        elif not held and self.leading:
            self.leading = False
            log.error("this engine lost the lease: it stops evaluating and sending")
            await self._on_deposed()
        self._set_gauge()

    async def run(self) -> None:
        """Attempt every ``period`` seconds until cancelled; a leader also wakes when its
        lease would run out, so it steps down on time."""
        while True:
            await self.step()
            wait = self.period
            if self.leading:
                wait = min(wait, max(self.lease.remaining(), 0.01))
            self._woken.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._woken.wait()
            except TimeoutError:
                pass

    async def resign(self) -> None:
        """Step down and give the lease up (a clean stop: a standby takes over at once)."""
        was_leading, self.leading = self.leading, False
        if was_leading:
            await self._on_deposed()
        await self._release_quietly()
        self._set_gauge()

    async def _release_quietly(self) -> None:
        try:
            async with asyncio.timeout(self.period):
                await self.lease.release()
        except Exception as exc:
            log.warning("alert lease not released (%s); it expires by itself", type(exc).__name__)

    def _set_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.scheduler_leader.set(1 if self.leading else 0)
