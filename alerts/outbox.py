"""Deliver queued notifications: at least once, with retries and backoff, off the evaluation path.

Evaluation only writes rows (``Store.save``); this runs as its own scheduler job, so a slow or
dead receiver delays nothing but its own messages. A failed attempt is retried after
``backoff * 2**attempts`` (capped), and abandoned after ``max_attempts`` or on an error that
cannot get better (e.g. HTTP 400).

Per receiver and alert, rows go out strictly in the order they were queued (``Store.due``):
a "resolved" never overtakes the "firing" before it. Delivered and abandoned rows are
deleted after ``keep`` (checked at most once per ``prune_every``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from alerts.errors import NotificationError
from alerts.notifiers.notifier import Notifier
from alerts.store import Delivery, Store
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope.alerts")


class Outbox:
    """Drain the store's due deliveries through the configured notifiers."""

    def __init__(
        self,
        *,
        store: Store,
        notifiers: Mapping[str, Notifier],
        metrics: Catalogue | None = None,
        max_attempts: int = 8,
        backoff: timedelta = timedelta(seconds=1),
        max_backoff: timedelta = timedelta(minutes=5),
        timeout: float = 10.0,
        keep: timedelta = timedelta(days=7),
        prune_every: timedelta = timedelta(hours=1),
    ) -> None:
        self._store = store
        self._notifiers = dict(notifiers)
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._keep = keep
        self._prune_every = prune_every
        self._pruned_at: datetime | None = None
        # Skip the database round trip while nothing can be waiting; a restart starts True
        # because rows queued before it may be undelivered.
        self.maybe_pending = True

    @property
    def receivers(self) -> list[str]:
        return sorted(self._notifiers)

    async def deliver(self, *, now: datetime) -> int:
        """Attempt every due delivery once (concurrently); return how many were accepted."""
        await self._prune(now=now)
        if not self.maybe_pending:
            return 0
        # Cleared before looking, so a ``True`` set meanwhile by an evaluation that queued rows
        # after the count below was taken is never overwritten.
        self.maybe_pending = False
        try:
            due = await self._store.due(now=now)
            outcomes = await asyncio.gather(*(self._attempt(d, now=now) for d in due))
            if await self._store.pending_deliveries() > 0:
                self.maybe_pending = True
        except BaseException:
            self.maybe_pending = True
            raise
        return sum(outcomes)

    async def _prune(self, *, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < self._prune_every:
            return
        removed = await self._store.prune(before=now - self._keep)
        self._pruned_at = now
        if removed:
            log.debug("outbox: pruned %d finished notifications", removed)

    async def _attempt(self, delivery: Delivery, *, now: datetime) -> bool:
        notifier = self._notifiers.get(delivery.receiver)
        if notifier is None:
            await self._store.abandon(delivery, at=now, error="receiver no longer configured")
            return False
        try:
            async with asyncio.timeout(self._timeout):
                await notifier.send(delivery)
        except (NotificationError, TimeoutError) as exc:
            retryable = getattr(exc, "retryable", True)
            message = str(exc) or f"{delivery.receiver}: timed out"
            if retryable and delivery.attempts + 1 < self._max_attempts:
                delay = min(self._backoff * 2**delivery.attempts, self._max_backoff)
                await self._store.retry(delivery, at=now, after=delay, error=message)
                self._count(delivery.receiver, "retried")
                log.warning("notification %s will be retried: %s", delivery.dedup_key, message)
            else:
                await self._store.abandon(delivery, at=now, error=message)
                self._count(delivery.receiver, "failed")
                log.error("notification %s abandoned: %s", delivery.dedup_key, message)
            return False
        await self._store.delivered(delivery, at=now)
        self._count(delivery.receiver, "sent")
        return True

    def _count(self, receiver: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.notifications.labels(receiver=receiver, outcome=outcome).inc()
