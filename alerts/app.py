"""The alert engine inside a FastAPI app: admin routes, and the in-process engine.

- ``GET /alerts`` (pending and firing), ``GET /alerts/history`` (latest transitions) and
  ``/alerts/silences`` (``POST`` to make, ``GET`` to list, ``DELETE .../{id}`` to expire) and
  ``POST /alerts/{fingerprint}/ack`` (no reminders of that alert until it resolves), for
  admins only: ``Authorization: Bearer $ADMIN_TOKEN``. Without ``ADMIN_TOKEN`` the routes do
  not exist (404), so nothing is exposed by default. They answer from the engine's memory
  when it runs in this process, otherwise from its store (``ALERT_STORE_URL``).
- ``embedded_engine``: in fully embedded mode (no ``PROMETHEUS_URL``, no ``REDIS_URL``) the
  API process also runs the scheduler, on the app's own metrics, but only one process per
  store does (``alerts.lock``): with ``--workers N`` the others run none. With Prometheus or
  Redis, ``dynoscope alerts run`` does.

The app's lifespan enters these in its own order; nothing here changes the app's lifespan.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerts.delivery import iso
from alerts.errors import AlertsError
from alerts.lease import HostLease
from alerts.lock import EngineLock, lock_path
from alerts.matchers import parse_matcher
from alerts.monitor import Monitor, open_store
from alerts.recurrence import Recurrence
from alerts.settings import AlertSettings
from alerts.silence import Silence, utc
from alerts.state import Alert, AlertState
from alerts.store import HistoryEntry, SilenceStore, Store
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope.alerts")

# A recurring maintenance window without an end stays for a year unless expired.
RECURRING_DEFAULT = timedelta(days=365)

_bearer = HTTPBearer(auto_error=False, description="ADMIN_TOKEN")


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "alertname": alert.rule,
        "state": alert.state.value,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": None if math.isnan(alert.value) else alert.value,  # NaN is not JSON
        "fingerprint": alert.fingerprint,
        "active_at": iso(alert.active_at),
        "fired_at": iso(alert.fired_at),
        "last_sent_at": iso(alert.last_sent_at),
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "alertname": entry.rule,
        "state": entry.state.value,
        "labels": entry.labels,
        "annotations": entry.annotations,
        "value": entry.value,
        "fingerprint": entry.fingerprint,
        "at": iso(entry.at),
    }


def alert_routes(token: str) -> APIRouter:
    """``/alerts`` and ``/alerts/history`` behind ``token``; they read ``app.state.alerts``
    (a running ``Monitor``) or else ``app.state.alert_store`` (a ``Store``)."""

    async def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "admin token required", {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "not an admin token")

    router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[Depends(admin)])

    @router.get("")
    async def active(request: Request) -> dict[str, Any]:
        monitor: Monitor | None = request.app.state.alerts
        if monitor is not None:
            alerts = monitor.active()
        else:
            alerts = await _store(request).active()
        return {"alerts": [alert_json(alert) for alert in alerts]}

    @router.get("/history")
    async def history(
        request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        monitor: Monitor | None = request.app.state.alerts
        if monitor is not None:
            entries = await monitor.history(limit=limit)
        else:
            entries = await _store(request).history(limit=limit)
        return {"history": [history_json(entry) for entry in entries]}

    _silence_routes(router)
    return router


class EveryIn(BaseModel):
    """A weekly maintenance window: ``{"days": "sun", "at": "02:00", "length": "1h"}`` (UTC)."""

    model_config = ConfigDict(extra="forbid")

    days: str
    at: str
    length: str

    @model_validator(mode="after")
    def _valid(self) -> EveryIn:
        Recurrence.parse(days=self.days, at=self.at, length=self.length)
        return self

    def recurrence(self) -> Recurrence:
        return Recurrence.parse(days=self.days, at=self.at, length=self.length)


class SilenceIn(BaseModel):
    """A silence to make: matchers like ``severity="page"`` or ``route=~"/admin.*"``."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[str] = Field(min_length=1)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    author: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=1000)
    every: EveryIn | None = None

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_matcher(text)  # ValueError: a 422 that names the matcher
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return utc(value) if value is not None else None

    @model_validator(mode="after")
    def _order(self) -> SilenceIn:
        if self.ends_at is None and self.every is None:
            raise ValueError("ends_at is required (only a recurring window may leave it out)")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class AckIn(BaseModel):
    """Who acknowledges, and why: reminders of the alert stop until it resolves."""

    model_config = ConfigDict(extra="forbid")

    author: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=1000)


def silence_json(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": [str(m) for m in silence.matchers],
        "starts_at": iso(silence.starts_at),
        "ends_at": iso(silence.ends_at),
        "author": silence.author,
        "comment": silence.comment,
        "created_at": iso(silence.created_at),
        "every": silence.recurrence.to_json() if silence.recurrence else None,
    }


def _silence_routes(router: APIRouter) -> None:
    """``/alerts/silences``: make (POST), list (GET) and expire (DELETE .../{id})."""

    @router.post("/silences", status_code=201)
    async def add(request: Request, body: SilenceIn) -> dict[str, Any]:
        now = datetime.now(UTC)
        starts_at = body.starts_at or now
        ends_at = body.ends_at or starts_at + RECURRING_DEFAULT
        if ends_at <= now:
            raise HTTPException(422, "ends_at must be in the future")
        silence = Silence.new(
            body.matchers,
            starts_at=starts_at,
            ends_at=ends_at,
            author=body.author,
            comment=body.comment,
            created_at=now,
            recurrence=body.every.recurrence() if body.every else None,
        )
        await _silences(request).add(silence)
        monitor: Monitor | None = request.app.state.alerts
        if monitor is not None:
            monitor.silences.add(silence)  # in force now, not at the next refresh
        log.info("silence %s made by %s", silence.id, silence.author)
        return silence_json(silence)

    @router.post("/{fingerprint}/ack", status_code=201)
    async def acknowledge(request: Request, fingerprint: str, body: AckIn) -> dict[str, Any]:
        monitor: Monitor | None = request.app.state.alerts
        alerts = monitor.active() if monitor is not None else await _store(request).active()
        alert = next((a for a in alerts if a.fingerprint == fingerprint), None)
        if alert is None or alert.state is not AlertState.FIRING:
            raise HTTPException(404, "no firing alert with this fingerprint")
        ack = Silence.acknowledge(
            alert, now=datetime.now(UTC), author=body.author, comment=body.comment
        )
        await _silences(request).add(ack)
        if monitor is not None:
            monitor.silences.add(ack)
        log.info("alert %s acknowledged by %s", fingerprint, body.author)
        return {**silence_json(ack), "fingerprint": fingerprint, "episode": iso(ack.episode)}

    @router.get("/silences")
    async def listed(request: Request) -> dict[str, Any]:
        found = await _silences(request).current(datetime.now(UTC))
        return {"silences": [silence_json(s) for s in found]}

    @router.delete("/silences/{silence_id}")
    async def expire(request: Request, silence_id: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        if not await _silences(request).expire(silence_id, now=now):
            raise HTTPException(404, "no such silence, or it has already ended")
        monitor: Monitor | None = request.app.state.alerts
        if monitor is not None:
            await monitor.silences.refresh(now=now)
        return {"expired": silence_id, "ends_at": iso(now)}


def _silences(request: Request) -> SilenceStore:
    monitor: Monitor | None = request.app.state.alerts
    if monitor is not None:
        return monitor.silence_store
    return SilenceStore(_store(request).engine)


def _store(request: Request) -> Store:
    store: Store | None = getattr(request.app.state, "alert_store", None)
    if store is None:
        raise HTTPException(503, "the alert store is not configured on this instance")
    return store


def runs_in_process(settings: AlertSettings, *, embedded: bool) -> bool:
    """Whether the API may run the engine itself: neither Prometheus (evaluated by ``dynoscope
    alerts run``) nor Redis (instances sharing a database, each of which would notify)."""
    return settings.prometheus_url is None and embedded


@contextlib.asynccontextmanager
async def store_reader(settings: AlertSettings) -> AsyncIterator[Store]:
    """The store, for ``/alerts`` on an instance that does not run the engine."""
    engine = open_store(settings)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def embedded_engine(
    settings: AlertSettings,
    *,
    metrics: Catalogue | None,
    collectors: Iterable[Collector],
    instance: str,
) -> AsyncIterator[Monitor | None]:
    """Run the engine in this process while the block runs, if this process takes the lock
    (``None`` otherwise, or when the rules are unusable: serving matters more)."""
    lock = EngineLock(lock_path(settings.store_url))
    if not _acquire(lock):
        yield None
        return
    store = open_store(settings)
    try:
        try:
            monitor = Monitor.build(
                settings,
                store=store,
                metrics=metrics,
                collectors=collectors,
                instance=instance,
                lease=HostLease(),  # the lock file already makes it the only engine
            )
        except AlertsError as exc:
            log.error("alert engine not started: %s", exc)
            lock.release()
            yield None
            return
        await monitor.start()
        try:
            yield monitor
        finally:
            await monitor.stop()
    finally:
        lock.release()
        await store.dispose()


def _acquire(lock: EngineLock) -> bool:
    try:
        acquired = lock.acquire()
    except OSError as exc:
        log.error("alert engine not started: cannot open lock file %s: %s", lock.path, exc)
        return False
    if not acquired:
        log.info("alert engine not started: another process runs it (lock %s)", lock.path)
    return acquired
