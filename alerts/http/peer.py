"""The two paths an engine answers its peers on (``alerts.engine.peers``), on the metrics port
of ``dynoscope alerts run`` and on the API of a process that runs the engine in-process;
behind ``METRICS_TOKEN`` when one is set, as ``/metrics`` is."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerts.engine.monitor import Monitor
from alerts.engine.peers import DECISIONS_PATH, PEER_PATH
from alerts.http.state import engine_state
from exporters.metrics import authorised

Answer = Callable[[Mapping[str, str]], Mapping[str, object] | None]

_bearer = HTTPBearer(auto_error=False, description="METRICS_TOKEN")


def since(value: str | None) -> datetime:
    """The ``since`` parameter: an ISO 8601 time with its offset (``Z`` for UTC)."""
    if not value:
        raise ValueError("since: required, an ISO 8601 time such as 2026-12-07T09:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise ValueError("since: give the offset (Z for UTC)")
    return parsed


def answers(monitor: Monitor) -> dict[str, Answer]:
    """Path → answer, for a server that is not FastAPI (the metrics port)."""
    return {
        PEER_PATH: lambda query: monitor.status(),
        DECISIONS_PATH: lambda query: monitor.decisions(since(query.get("since"))),
    }


def peer_routes(token: str | None) -> APIRouter:
    """The same paths on an API app; 404 where no engine runs in the process."""

    async def allowed(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        header = f"Bearer {credentials.credentials}" if credentials is not None else None
        if not authorised(token, header):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    router = APIRouter(include_in_schema=False, dependencies=[Depends(allowed)])

    def monitor_of(request: Request) -> Monitor:
        monitor = engine_state(request.app).monitor
        if monitor is None:
            raise HTTPException(status_code=404, detail="no alert engine runs in this process")
        return monitor

    @router.get(PEER_PATH)
    async def status(request: Request) -> Mapping[str, object]:
        return monitor_of(request).status()

    @router.get(DECISIONS_PATH)
    async def decisions(
        request: Request, since_: Annotated[str | None, Query(alias="since")] = None
    ) -> Mapping[str, object]:
        try:
            start = since(since_)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return monitor_of(request).decisions(start)

    return router
