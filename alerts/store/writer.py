"""Write the engine's journal behind to its store, and survive the store being down.

Nothing in evaluation or delivery waits for this. Every second (a scheduler job of its own)
the ledger's journal is written in one transaction, bounded by a timeout. A store that is
slow or unreachable turns ``dynoscope_alert_store_up`` to 0, is counted in
``dynoscope_alert_store_failures_total`` and logged once; the journal is kept and written
in full once the store answers again (logged once too). ``MonitorStoreDegraded`` fires on
the gauge.

The first successful contact also migrates the store and adopts what it holds (alerts from
before a restart, undelivered notifications), also when that happens late because the store
was down at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alerts.delivery.outbox import Outbox
from alerts.engine.ledger import Ledger
from alerts.errors import LeaseLost
from alerts.metrics import EngineMetrics
from alerts.store.lease import Lease
from alerts.store.store import Store

Operation = Literal["write", "load", "prune", "lease"]
STORE_OPERATIONS: tuple[Operation, ...] = ("write", "load", "prune", "lease")

log = logging.getLogger("dynoscope.alerts")

Migrate = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class StorePolicy:
    """How long one store call may take (``timeout`` seconds; loading five times that), how
    long history is kept, and how often the old is pruned."""

    timeout: float = 2.0
    keep: timedelta = timedelta(days=7)
    prune_every: timedelta = timedelta(hours=1)


class StoreWriter:
    """Connects the in-memory engine to its store.

    A write the store refuses because another engine holds ``lease`` now drops the lease
    (``Lease.drop``): this engine stops acting at once.
    """

    def __init__(
        self,
        *,
        store: Store,
        ledger: Ledger,
        outbox: Outbox,
        rules: Collection[str],
        metrics: EngineMetrics | None = None,
        migrate: Migrate | None = None,
        policy: StorePolicy = StorePolicy(),
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self._ledger = ledger
        self._outbox = outbox
        self._rules = frozenset(rules)
        self._metrics = metrics
        if metrics is not None:
            # Known at start: a store that never failed reads 0 per operation, not nothing.
            for operation in STORE_OPERATIONS:
                metrics.alert_store_failures.labels(operation=operation)
        self._migrate = migrate
        self._timeout = policy.timeout
        self._keep = policy.keep
        self._prune_every = policy.prune_every
        self._pruned_at: datetime | None = None
        self._lease = lease
        self.loaded = False
        self._migrated = migrate is None
        self.up: bool | None = None
        self._lock = asyncio.Lock()

    async def connect(self, *, now: datetime, adopt: bool = True) -> bool:
        """Migrate the store and adopt what it holds; False (and degraded) when it can't.
        Without ``adopt`` only undelivered notifications are taken over: memory holds newer
        alert state than the store (decided while the store was out of reach)."""
        async with self._lock:
            return await self._connect(now=now, adopt=adopt)

    async def flush(self, *, now: datetime) -> bool:
        """Write the journal; True when the store has everything decided so far."""
        async with self._lock:
            if self._lease is not None and not self._lease.writes():
                # Acting without the store's lease (it is out of reach): the journal is kept
                # for whichever engine leads once it is back (``alerts.engine.election``).
                return False
            if not self.loaded and not await self._connect(now=now):
                return False
            changes = self._ledger.take()
            if changes:
                fence = self._lease.fence() if self._lease is not None else None
                try:
                    async with asyncio.timeout(self._timeout):
                        await self.store.write(changes, fence=fence)
                except LeaseLost as exc:
                    # Another engine leads now and owns what the store holds: these changes
                    # are dropped, not put back, and this engine stops acting at once.
                    log.error("alert store refused a write: %s; this engine steps down", exc)
                    if self._lease is not None:
                        self._lease.drop()
                    return False
                except Exception as exc:
                    self._ledger.put_back(changes)
                    self._down("write", exc)
                    return False
            self._up()
            await self._prune(now=now)
            return True

    @property
    def timeout(self) -> float:
        """Seconds one store call may take."""
        return self._timeout

    @property
    def backlog(self) -> int:
        """Changes not yet written."""
        return self._ledger.backlog

    def reset(self) -> None:
        """Forget that the store was loaded: the next contact adopts what it holds again
        (after leadership was lost and regained, the store has a successor's changes)."""
        self.loaded = False

    async def migrate(self) -> None:
        """Bring the store's schema up to date, once per process (raises when it can't)."""
        if self._migrated or self._migrate is None:
            return
        async with asyncio.timeout(self._timeout * 5):
            await self._migrate()
        self._migrated = True

    async def _connect(self, *, now: datetime, adopt: bool = True) -> bool:
        if self.loaded:
            return True
        try:
            await self.migrate()
            async with asyncio.timeout(self._timeout):
                snapshot = await self.store.load()
        except Exception as exc:
            self._down("load", exc)
            return False
        # Undelivered notifications first: they were queued before anything decided now.
        restored = self._outbox.restore(snapshot.deliveries, now=now)
        if adopt:
            retired = self._ledger.adopt(snapshot.alerts, rules=self._rules, now=now)
            self._outbox.notify(retired, now=now)
        else:
            self._ledger.rewrite(self._rules)
        if restored:
            log.info("alert store: %d undelivered notification(s) queued again", restored)
        self.loaded = True
        self._up()
        return True

    async def _prune(self, *, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < self._prune_every:
            return
        self._pruned_at = now
        try:
            async with asyncio.timeout(self._timeout):
                removed = await self.store.prune(before=now - self._keep)
        except Exception as exc:
            self._down("prune", exc)
            return
        if removed:
            log.debug("alert store: pruned %d finished notifications", removed)

    def unreachable(self, operation: Operation, exc: BaseException) -> None:
        """Another part of the engine (the election) could not reach the store."""
        self._down(operation, exc)

    def _down(self, operation: Operation, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.alert_store_failures.labels(operation=operation).inc()
            self._metrics.alert_store_up.set(0)
            self._metrics.alert_store_backlog.set(self._ledger.backlog)
        if self.up is not False:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.error(
                "alert store unavailable (%s: %s): alerts are kept in memory and written once "
                "it is back",
                operation,
                reason,
            )
        self.up = False

    def _up(self) -> None:
        if self._metrics is not None:
            self._metrics.alert_store_up.set(1)
            self._metrics.alert_store_backlog.set(self._ledger.backlog)
        if self.up is False:
            log.warning("alert store reachable again: caught up")
        self.up = True
