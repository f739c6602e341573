"""What each mode of the election does to the engine (``alerts.engine.election``).

- elected: go on from memory if nobody held the lease since it was the latest, else forget and
  load the store; after a store outage, take in what the peers decided and delivered;
- deposed: stop evaluating and sending (memory is kept until the next election says whether
  another engine led in between);
- acting without the store: go on from memory (a leader's own, a standby's copy);
- standby: copy the leader's alerts from the store, so there is something to go on from.

It also answers the peers (``status``, ``decisions``). Why this is safe: docs/high-availability.md.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from alerts.engine.election import Mode
from alerts.engine.peers import decisions_json
from alerts.store.lease import StoreLease

if TYPE_CHECKING:
    from alerts.engine.monitor import Monitor

log = logging.getLogger("dynoscope.alerts")


class Leadership:
    """The engine's side of the election, for one ``Monitor``."""

    def __init__(self, monitor: Monitor) -> None:
        self._m = monitor
        self.immediately = True  # the first cycles run at once (a takeover skips nothing)
        self._acting = False  # the scheduler runs
        # The lease term up to which this engine's memory is the latest: it led in that term,
        # or followed its leader and then acted without the store.
        self._memory_token: int | None = None
        # When the store stopped answering (by the scheduler's clock), until a leader caught up.
        self._outage_since: datetime | None = None

    async def elected(self) -> bool:
        # Whatever this engine knew is stale: the store has what the last leader decided.
        # Unless nobody held the lease since its memory was the latest (it led, or it acted
        # without the store, and the new token is the next one): then its memory, with the
        # changes it could not write yet, is the latest there is, and it goes on from there.
        token = self._m.lease.token if isinstance(self._m.lease, StoreLease) else None
        alone = self._m.election is not None and self._m.election.mode is Mode.DEGRADED
        current = (
            token is not None
            and self._memory_token is not None
            and token == self._memory_token + 1
            and (self._m.writer.loaded or alone)
        )
        if current:
            log.warning(
                "alert engine leads again and nobody led in between: it goes on from memory "
                "(%d unwritten change(s))",
                self._m.ledger.backlog,
            )
        else:
            await self.halt()
            self._forget()
        now = self._m.scheduler.clock()
        if not await self._m.writer.connect(now=now, adopt=not current):
            log.error("lease taken but the store could not be loaded; trying again")
            return False
        self._memory_token = token
        if self._outage_since is not None:
            await self._merge_peers(self._outage_since, now=now)
            self._outage_since = None
        self.act()
        return True

    def unreachable(self, exc: BaseException) -> None:
        self._m.writer.unreachable("lease", exc)
        if self._outage_since is None and self._m.election is not None:
            blind = timedelta(seconds=self._m.election.blind_for())
            self._outage_since = self._m.scheduler.clock() - blind

    async def _merge_peers(self, since: datetime, *, now: datetime) -> None:
        """The store is back and this engine leads: take in what its peers decided while
        the store was out of reach (each transition once), and do not send again what they
        delivered."""
        if self._m.peers is None:
            return
        history, delivered = await self._m.peers.decisions(since)
        intervals = [g.interval for g in self._m.rules.groups] or [timedelta(seconds=1)]
        tolerance = 2 * max(intervals) + timedelta(seconds=1)
        merged = self._m.ledger.merge_history(history, tolerance=tolerance)
        settled = self._m.outbox.settle(delivered, now=now, keep=tolerance)
        log.warning(
            "after the store outage: %d transition(s) from peers added to history, %d "
            "notification(s) they delivered not sent again",
            merged,
            settled,
        )

    def decisions(self, since: datetime) -> dict[str, Any]:
        """What this engine tells a leader catching up after a store outage
        (``alerts.engine.peers``)."""
        history, delivered = self._m.ledger.decided_since(since)
        return decisions_json(history, delivered)

    async def degraded(self) -> None:
        # The store is out of reach and nobody leads: go on from what this engine knows (its
        # memory as leader, or its copy of the leader's alerts as standby).
        if not self._acting and isinstance(self._m.lease, StoreLease):
            self._memory_token = self._m.lease.seen_token
        self.act()

    async def deposed(self) -> None:
        # Memory is kept (and used by nobody) until the next election says whether another
        # engine led in between; a standby answers from the store (``current``). Another
        # engine leads: catching up after an outage is its job, not this one's later.
        self._outage_since = None
        await self.halt()

    async def follow(self) -> None:
        """As standby, copy the alerts the leader keeps in the store (briefly; a failure only
        leaves the copy as it was)."""
        try:
            async with asyncio.timeout(self._m.writer.timeout):
                alerts = await self._m.store.active()
        except Exception as exc:
            log.debug("standby could not read the store's alerts: %s", type(exc).__name__)
            return
        self._m.ledger.follow(alerts)
        self._outage_since = None  # the store answers, and another engine leads

    def act(self) -> None:
        if not self._acting:
            self._m.scheduler.start(immediately=self.immediately)
            self._acting = True

    async def halt(self) -> None:
        if self._acting:
            await self._m.scheduler.stop()
            self._acting = False

    def status(self) -> dict[str, object]:
        """What peers are told (``alerts.engine.peers``): mode, whether this engine's last
        attempt reached the store, and the lease token it last saw."""
        election = self._m.election
        lease = self._m.lease if isinstance(self._m.lease, StoreLease) else None
        return {
            "mode": election.mode.value if election is not None else "leader",
            "store_reachable": (
                election.store_reachable if election is not None else self._m.writer.up
            ),
            "token": lease.seen_token if lease is not None else None,
        }

    def _forget(self) -> None:
        self._memory_token = None
        self._m.ledger.reset()
        self._m.outbox.reset()
        self._m.writer.reset()
        self._m.resender.reset()
