"""Who evaluates and sends: the store's lease while the store answers, everyone who cannot see
a leader while it does not.

Every third of the lease's length ``step`` takes or renews the lease. An engine is in one of
three modes:

- ``leader``: it holds the store's lease (``alerts.store.lease``), evaluates, sends and
  writes; every write is fenced by its token. Sending stops by itself once the lease runs out
  (the outbox sends only while ``lease.remaining()`` is positive).
- ``standby``: another engine leads. It follows what the leader keeps in the store
  (``on_standby``), so it can go on from there if it has to act without the store.
- ``degraded``: the store has not answered this engine for longer than a lease, and no peer
  (``ALERT_PEERS``) says it reaches the store. Then no engine can hold a valid lease, and the
  engine fails open, as an Alertmanager cluster does: it evaluates and sends on its own, with
  the alert's fingerprint as every receiver's dedup key, so a receiver hears each transition
  at most once per engine and PagerDuty or Alertmanager fold the copies. It writes nothing
  (its decisions stay in memory) and says so (``MonitorStoreDegraded`` fires on the store's
  gauge). When a peer reaches the store, a leader exists or will: the engine stays quiet.

When the store answers again, the engines compete for the lease as always; exactly one wins.
The winner goes on from its memory and writes it (``lease.resumed``: nobody held the lease
since it last saw the row), or, if another engine led meanwhile, loads the store. The others
step down and forget what they decided: each transition is written once, by the winner.

    election = Election(lease, on_elected=start_engine, on_deposed=stop_engine)
    await election.step()          # the first attempt, before serving
    task = asyncio.create_task(election.run())
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from alerts.metrics import EngineMetrics
from alerts.store.lease import StoreLease

log = logging.getLogger("dynoscope.alerts")


class Mode(enum.StrEnum):
    LEADER = "leader"
    STANDBY = "standby"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class WithoutStore:
    """What an election does around a store it cannot reach, each optional: tell the engine
    it acts alone (``on_degraded``), let a standby follow the leader while the store answers
    (``on_standby``), report a failed attempt (``on_unreachable``), and ask the peers whether
    one of them reaches the store (``peers_see_store``; without it an engine fails open on
    the lease alone)."""

    on_degraded: Callable[[], Awaitable[None]] | None = None
    on_standby: Callable[[], Awaitable[None]] | None = None
    on_unreachable: Callable[[BaseException], None] | None = None
    peers_see_store: Callable[[], Awaitable[bool]] | None = None


class Election:
    """Keeps one engine's claim on the lease, and tells it when it leads, when not, and when
    it acts without the store."""

    def __init__(
        self,
        lease: StoreLease,
        *,
        on_elected: Callable[[], Awaitable[bool]],
        on_deposed: Callable[[], Awaitable[None]],
        without_store: WithoutStore = WithoutStore(),
        prepare: Callable[[], Awaitable[None]] | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.lease = lease
        self._prepare = prepare
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._on_degraded = without_store.on_degraded
        self._on_standby = without_store.on_standby
        self._on_unreachable = without_store.on_unreachable
        self._peers_see_store = without_store.peers_see_store
        self._metrics = metrics
        self.mode = Mode.STANDBY
        self.store_reachable: bool | None = None
        self._unreachable = False
        self._last_contact = time.monotonic()
        self._woken = asyncio.Event()
        self._set_gauge()

    @property
    def leading(self) -> bool:
        """Whether this engine evaluates and sends now (as leader, or without the store)."""
        return self.mode is not Mode.STANDBY

    @property
    def period(self) -> float:
        """Seconds between two attempts: a third of the lease, so two may fail in a row."""
        return self.lease.ttl / 3

    def blind_for(self) -> float:
        """Seconds since the store last answered this engine."""
        return time.monotonic() - self._last_contact

    def wake(self) -> None:
        """Try again now (e.g. the store refused a write: the lease is probably gone)."""
        self._woken.set()

    async def step(self) -> None:
        """One attempt at the lease, and whatever follows from its outcome."""
        held = await self._attempt()
        if held:
            if self.mode is not Mode.LEADER:
                await self._lead()
        elif not self.store_reachable and await self._blind():
            await self._fail_open()
        elif self.mode is not Mode.STANDBY:
            was, self.mode = self.mode, Mode.STANDBY
            self.lease.open_for(0)
            if was is Mode.LEADER:
                log.error("this engine lost the lease: it stops evaluating and sending")
            else:
                log.warning("alert store or its leader is back: this engine stops acting alone")
            await self._on_deposed()
        elif self.store_reachable and self._on_standby is not None:
            await self._on_standby()
        self._set_gauge()

    async def _attempt(self) -> bool:
        asked = time.monotonic()
        try:
            if self._prepare is not None:
                # The lease row lives in the store's schema: migrate before the first attempt.
                await self._prepare()
                self._prepare = None
            async with asyncio.timeout(self.period):
                held = await self.lease.acquire()
        except Exception as exc:
            # Unknown whether the renewal landed: act only for what is left of the last one.
            if not self._unreachable:
                reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                log.error("alert lease: the store did not answer (%s)", reason)
            self._unreachable = True
            self.store_reachable = False
            if self._on_unreachable is not None:
                self._on_unreachable(exc)
            return self.lease.held() > 0
        if self._unreachable:
            log.warning("alert store reachable again for the lease")
        self._unreachable = False
        self.store_reachable = True
        self._last_contact = asked
        return held

    async def _blind(self) -> bool:
        """Whether nobody can be leading: the store has not answered for a whole lease (any
        lease granted before has run out by its holder's clock too), and no peer reaches it."""
        if self.blind_for() < self.lease.ttl:
            return False
        if self._peers_see_store is None:
            return True
        try:
            async with asyncio.timeout(self.period):
                return not await self._peers_see_store()
        except TimeoutError:
            return True

    async def _lead(self) -> None:
        was = self.mode
        self.lease.open_for(0)
        if await self._on_elected():
            self.mode = Mode.LEADER
            log.warning("this engine leads (lease token %s)", self.lease.token)
            return
        await self._release_quietly()
        if was is Mode.DEGRADED:
            self.mode = Mode.STANDBY
            await self._on_deposed()

    async def _fail_open(self) -> None:
        # Renewed at every step while it lasts; two periods, so one late step does not stop it.
        self.lease.open_for(2 * self.period)
        if self.mode is Mode.DEGRADED:
            return
        was, self.mode = self.mode, Mode.DEGRADED
        log.error(
            "alert store out of reach for over %gs and no peer reaches it: this engine "
            "evaluates and sends on its own (was %s); nothing is written until it is back",
            self.lease.ttl,
            was.value,
        )
        if self._on_degraded is not None:
            await self._on_degraded()

    async def run(self) -> None:
        """Attempt every ``period`` seconds until cancelled; a leader also wakes when its
        lease would run out, so it steps down (or fails open) on time."""
        while True:
            await self.step()
            wait = self.period
            if self.mode is Mode.LEADER:
                wait = min(wait, max(self.lease.held(), 0.01))
            self._woken.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._woken.wait()
            except TimeoutError:
                pass

    async def resign(self) -> None:
        """Step down and give the lease up (a clean stop: a standby takes over at once)."""
        was_leading, self.mode = self.leading, Mode.STANDBY
        self.lease.open_for(0)
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
