"""The alert engine inside a FastAPI app: admin routes, and the in-process engine.

- ``GET /alerts`` (pending and firing), ``GET /alerts/history`` (latest transitions) and
  ``/alerts/silences`` (``POST`` to make, ``GET`` to list, ``DELETE .../{id}`` to expire) and
  ``POST /alerts/{fingerprint}/ack`` (no reminders of that alert until it resolves) and
  ``POST /alerts/query`` (signals of the in-process engine's own window, ``query.py``), for
  admins only: ``Authorization: Bearer $ADMIN_TOKEN``. Without ``ADMIN_TOKEN`` the routes do
  not exist (404), so nothing is exposed by default. They answer from the engine's memory
  when it runs in this process, otherwise from its store (``ALERT_STORE_URL``).
- ``embedded_engine``: in fully embedded mode (no ``PROMETHEUS_URL``, no ``REDIS_URL``) the
  API process also runs the scheduler, on the app's own metrics. On a SQLite store one
  process per file does (``alerts.store.lock``): with ``--workers N`` the others run none. On a
  PostgreSQL store (``ALERT_STORE_URL``) each competes for the store's lease and one leads,
  on however many hosts. With Prometheus or Redis, ``dynoscope alerts run`` does.

The app's lifespan enters these in its own order; nothing here changes the app's lifespan.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.registry import Collector
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from alerts.delivery.notification import iso
from alerts.engine.monitor import Monitor, open_store
from alerts.engine.state import Alert
from alerts.errors import AlertsError
from alerts.http.query import add_query_routes
from alerts.http.silences import add_silence_routes
from alerts.http.state import engine_state
from alerts.settings import AlertSettings
from alerts.store.lease import HostLease
from alerts.store.lock import EngineLock, lock_path
from alerts.store.store import HistoryEntry, Store
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope.alerts")

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


def admin_only(token: str) -> Callable[..., Awaitable[None]]:
    """A route dependency admitting ``Authorization: Bearer <token>`` only: 401 without a
    bearer token, 403 with another one.

        router = APIRouter(dependencies=[Depends(admin_only(token))])
    """

    async def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "admin token required", {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "not an admin token")

    return admin


def alert_routes(token: str) -> APIRouter:
    """``/alerts`` and ``/alerts/history`` behind ``token``; they read ``engine_state(app)``:
    the ``Monitor`` running in this process, or else the ``Store`` it is read from."""
    router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[Depends(admin_only(token))])

    @router.get("")
    async def active(request: Request) -> dict[str, Any]:
        monitor = engine_state(request.app).monitor
        if monitor is not None:
            alerts = await monitor.current()
        else:
            alerts = await app_store(request.app).active()
        return {"alerts": [alert_json(alert) for alert in alerts]}

    @router.get("/history")
    async def history(
        request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        monitor = engine_state(request.app).monitor
        if monitor is not None:
            entries = await monitor.history(limit=limit)
        else:
            entries = await app_store(request.app).history(limit=limit)
        return {"history": [history_json(entry) for entry in entries]}

    add_silence_routes(router, store=app_store)
    add_query_routes(router)
    return router


def app_store(app: Starlette) -> Store:
    """The store the admin routes read when the engine does not run in this process."""
    store = engine_state(app).store
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
    """Run the engine in this process while the block runs, if this process may (``None``
    otherwise, or when the rules are unusable: serving matters more).

    On a store in a SQLite file only one process per file runs it (a lock file: the file
    cannot be shared between hosts anyway). On a database server every process runs one and
    they compete for the store's lease, so processes on several hosts sharing the store
    still have exactly one leader; the others wait as standbys.
    """
    lock, lease = _guard(settings)
    if lock is not None and not _acquire(lock):
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
                lease=lease,
            )
        except AlertsError as exc:
            log.error("alert engine not started: %s", exc)
            yield None
            return
        await monitor.start()
        try:
            yield monitor
        finally:
            await monitor.stop()
    finally:
        if lock is not None:
            lock.release()
        await store.dispose()


def _guard(settings: AlertSettings) -> tuple[EngineLock | None, HostLease | None]:
    """A lock file and no lease for a store only this host can open (or with
    ``ALERT_LEASE_SECONDS=0``); otherwise the store's lease alone (``None``, ``None``)."""
    shared = make_url(settings.store_url).get_backend_name() != "sqlite"
    if shared and settings.lease_seconds > 0:
        return None, None
    return EngineLock(lock_path(settings.store_url)), HostLease()


def _acquire(lock: EngineLock) -> bool:
    try:
        acquired = lock.acquire()
    except OSError as exc:
        log.error("alert engine not started: cannot open lock file %s: %s", lock.path, exc)
        return False
    if not acquired:
        log.info("alert engine not started: another process runs it (lock %s)", lock.path)
    return acquired
