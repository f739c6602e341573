"""Wire the alert engine into the property API.

- ``GET /alerts`` (pending and firing) and ``GET /alerts/history`` (latest transitions), for
  admins only: ``Authorization: Bearer $ADMIN_TOKEN``. Without ``ADMIN_TOKEN`` the routes do
  not exist (404), so nothing is exposed by default.
- In fully embedded mode (no ``PROMETHEUS_URL``, no ``REDIS_URL``) the API process also runs
  the scheduler, on the app's own metrics, for the life of the app, but only one process per
  database does (``alerts.lock``): with ``--workers N`` the others run none. With Prometheus
  or Redis, ``dynoscope alerts run`` does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.errors import AlertsError
from alerts.lock import EngineLock, lock_path
from alerts.monitor import Monitor
from alerts.state import Alert
from alerts.store import HistoryEntry, Store
from api.errors import Forbidden, Unauthorized
from api.settings import Settings

log = logging.getLogger("dynoscope.alerts")

_bearer = HTTPBearer(auto_error=False, description="ADMIN_TOKEN")


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "alertname": alert.rule,
        "state": alert.state.value,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "value": None if math.isnan(alert.value) else alert.value,  # NaN is not JSON
        "fingerprint": alert.fingerprint,
        "active_at": _iso(alert.active_at),
        "fired_at": _iso(alert.fired_at),
        "last_sent_at": _iso(alert.last_sent_at),
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
        "at": _iso(entry.at),
    }


def _router(token: str) -> APIRouter:
    async def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("admin token required")
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise Forbidden("not an admin token")

    router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[Depends(admin)])

    def store(request: Request) -> Store:
        return Store(request.app.state.services.engine)

    @router.get("")
    async def active(request: Request) -> dict[str, Any]:
        alerts = await store(request).active()
        return {"alerts": [alert_json(alert) for alert in alerts]}

    @router.get("/history")
    async def history(
        request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        entries = await store(request).history(limit=limit)
        return {"history": [history_json(entry) for entry in entries]}

    return router


def attach_alerts(app: FastAPI, settings: Settings) -> None:
    """Add ``/alerts`` routes and, in fully embedded mode, the in-process scheduler."""
    app.state.alerts = None
    if settings.admin_token is not None:
        app.include_router(_router(settings.admin_token.get_secret_value()))
    if runs_in_process(settings):
        _run_in_lifespan(app, settings)


def runs_in_process(settings: Settings) -> bool:
    """Whether the API may run the engine itself: neither Prometheus (evaluated by ``dynoscope
    alerts run``) nor Redis (instances sharing a database, each of which would notify)."""
    return settings.prometheus_url is None and settings.embedded


def _run_in_lifespan(app: FastAPI, settings: Settings) -> None:
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with original(app) as state:
            lock = EngineLock(lock_path(settings.database_url))
            try:
                monitor = _build(app, settings) if _acquire(lock) else None
                if monitor is None:
                    lock.release()  # nothing to guard: bad rules, or another process has it
                else:
                    await monitor.start()
                app.state.alerts = monitor
                try:
                    yield state
                finally:
                    if monitor is not None:
                        await monitor.stop()
            finally:
                lock.release()

    app.router.lifespan_context = lifespan


def _acquire(lock: EngineLock) -> bool:
    try:
        acquired = lock.acquire()
    except OSError as exc:
        log.error("alert engine not started: cannot open lock file %s: %s", lock.path, exc)
        return False
    if not acquired:
        log.info("alert engine not started: another process runs it (lock %s)", lock.path)
    return acquired


def _build(app: FastAPI, settings: Settings) -> Monitor | None:
    metrics = getattr(app.state, "metrics", None)
    telemetry = getattr(app.state, "telemetry", None)
    scrape = getattr(telemetry, "scrape_source", None)
    try:
        return Monitor.build(
            settings,
            engine=app.state.services.engine,
            metrics=metrics,
            collectors=[scrape] if scrape is not None else [],
            instance=getattr(telemetry, "instance_id", None) or "local",
        )
    except AlertsError as exc:
        # Serving the API matters more than alerting on it; the message says what to fix.
        log.error("alert engine not started: %s", exc)
        return None
