"""Run each rule group at its interval with APScheduler; only this module reads the clock.

Every group is one job with ``max_instances=1``: a group still running when its next run is
due skips that run, and the skip is counted (``dynoscope_scheduler_skipped_runs_total``).
Notification delivery and writing to the store are jobs of their own, so neither a slow
receiver nor a slow store ever delays evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from alerts.delivery.outbox import Outbox
from alerts.delivery.resend import Resender
from alerts.engine.evaluator import Cycle, Evaluator
from alerts.rules.rule import Group
from alerts.silences.silence import Silences
from alerts.store.writer import StoreWriter

log = logging.getLogger("dynoscope.alerts")

Clock = Callable[[], datetime]
DELIVERY_JOB = "outbox"
STORE_JOB = "store"
RESEND_JOB = "resend"
SILENCE_JOB = "silences"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Cadence:
    """How often the scheduler's own jobs run: delivery (and, five times slower at the most,
    reminders), and the refresh of silences from the store."""

    delivery: timedelta = timedelta(seconds=1)
    silences: timedelta = timedelta(seconds=2)


class Scheduler:
    """Evaluate ``groups`` and deliver notifications until stopped."""

    def __init__(
        self,
        *,
        groups: Sequence[Group],
        evaluator: Evaluator,
        outbox: Outbox,
        writer: StoreWriter | None = None,
        clock: Clock = utc_now,
        cadence: Cadence = Cadence(),
        resend: Resender | None = None,
        silences: Silences | None = None,
    ) -> None:
        self._resend = resend
        self._silences = silences
        self._silence_interval = cadence.silences
        self._groups = {f"group:{group.name}": group for group in groups}
        self._evaluator = evaluator
        self._outbox = outbox
        self._writer = writer
        self._metrics = metrics = evaluator.metrics
        if metrics is not None:
            # Known at start: rate() over a group that never skipped answers 0, not nothing.
            for group in groups:
                metrics.scheduler_skipped_runs.labels(group=group.name)
        self.clock = clock
        self._delivery_interval = cadence.delivery
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self.skipped: Counter[str] = Counter()
        self.cycles: Counter[str] = Counter()
        self.last_cycle: dict[str, Cycle] = {}

    def start(self, *, immediately: bool = False) -> None:
        """Schedule the jobs on the running event loop; the first cycles run after one
        interval unless ``immediately``."""
        chatter = logging.getLogger("apscheduler")
        if chatter.level == logging.NOTSET:
            # It logs every run at INFO: one line per group per interval drowns the service's
            # own log. An explicitly configured level is left alone.
            chatter.setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        now = self.clock()
        for job_id, group in self._groups.items():
            scheduler.add_job(
                self.run_group,
                "interval",
                args=[group],
                id=job_id,
                seconds=group.interval.total_seconds(),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=now if immediately else now + group.interval,
            )
        self._add_housekeeping(scheduler, now=now)
        scheduler.start()
        self._scheduler = scheduler

    def _add_housekeeping(self, scheduler: AsyncIOScheduler, *, now: datetime) -> None:
        """The jobs besides rule groups: delivery, reminders, silences, the store's flush."""
        every = self._delivery_interval.total_seconds()
        jobs: list[tuple[str, Callable[[], Awaitable[Any]], float]] = [
            (DELIVERY_JOB, self.deliver, every)
        ]
        if self._resend is not None:
            period = self._resend.period or self._delivery_interval * 5
            jobs.append(
                (RESEND_JOB, self.resend, min(period, self._delivery_interval * 5).total_seconds())
            )
        if self._silences is not None:
            jobs.append(
                (SILENCE_JOB, self.refresh_silences, self._silence_interval.total_seconds())
            )
        if self._writer is not None:
            jobs.append((STORE_JOB, self.flush, every))
        for job_id, job, seconds in jobs:
            # Silences are read at once, so a silence made before the start is in force.
            first = {"next_run_time": now} if job_id == SILENCE_JOB else {}
            scheduler.add_job(
                job,
                "interval",
                id=job_id,
                seconds=seconds,
                max_instances=1,
                coalesce=True,
                **first,
            )

    async def stop(self) -> None:
        """Stop scheduling, cancel runs in progress and wait until they have unwound (the
        database engine is closed right after)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._running.add(task)
        try:
            yield
        finally:
            self._running.discard(task)

    async def run_group(self, group: Group) -> None:
        """One evaluation of ``group`` at the current time (the APScheduler job)."""
        try:
            with self._tracked():
                cycle = await self._evaluator.run(group, now=self.clock())
        except asyncio.CancelledError:
            return  # ``stop`` cancelled it (shutdown, or stepping down): expected, not an error
        except Exception:
            # The evaluator has already counted each rule's failure; this is a bug.
            log.exception("group %s: evaluation failed", group.name)
            return
        self.cycles[group.name] += 1
        self.last_cycle[group.name] = cycle
        if cycle.notifications and self._scheduler is not None:
            # Announce now rather than at the next delivery tick: on-call hears a second
            # sooner, and a resolved alert is announced at once.
            self._scheduler.modify_job(DELIVERY_JOB, next_run_time=self.clock())

    async def deliver(self) -> None:
        """Send due notifications (the delivery job).

        With a store that answers, what is queued is written before it is sent and what was
        sent is written right after: an engine that takes over from one killed here sends
        again at most what was in flight."""
        try:
            with self._tracked():
                writer = self._writer
                if writer is not None and writer.up and writer.backlog:
                    await writer.flush(now=self.clock())
                sent = await self._outbox.deliver(now=self.clock())
                if writer is not None and writer.up and sent:
                    await writer.flush(now=self.clock())
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("notification delivery failed")

    async def refresh_silences(self) -> None:
        """Read silences made anywhere (the silence job)."""
        if self._silences is None:
            return
        try:
            with self._tracked():
                await self._silences.refresh(now=self.clock())
        except asyncio.CancelledError:
            return

    async def resend(self) -> None:
        """Refreshes and reminders of firing alerts (the resend job)."""
        if self._resend is not None:
            try:
                self._resend.run(now=self.clock())
            except Exception:
                log.exception("resending firing alerts failed")

    async def flush(self) -> None:
        """Write what memory decided to the store (the store job)."""
        if self._writer is None:
            return
        try:
            with self._tracked():
                await self._writer.flush(now=self.clock())
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("writing to the alert store failed")

    def _skipped(self, event: JobEvent) -> None:
        group = self._groups.get(event.job_id)
        if group is None:
            return
        self.skipped[group.name] += 1
        if self._metrics is not None:
            self._metrics.scheduler_skipped_runs.labels(group=group.name).inc()
