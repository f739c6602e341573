"""``/admin/faults``: list faults, switch one on (``PUT``) or off (``DELETE``); admins only.

    curl -H "Authorization: Bearer $ADMIN_TOKEN" -X PUT localhost:8000/admin/faults/db_slow \\
        -H 'Content-Type: application/json' -d '{"hold": 2, "period": 10}'

Mounted only with ``DYNOSCOPE_FAULTS_ENABLED=true``; otherwise every path is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from alerts.http.app import admin_only
from api.faults import FaultError, Faults


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


def _failed(exc: FaultError) -> JSONResponse:
    body = {"error": exc.code, "detail": exc.detail, **exc.extra}
    return JSONResponse(body, status_code=exc.status_code)


def fault_routes(token: str) -> APIRouter:
    """The routes, behind ``token`` (the same bearer check as ``/alerts``)."""
    router = APIRouter(
        prefix="/admin/faults", tags=["faults"], dependencies=[Depends(admin_only(token))]
    )

    @router.get("")
    async def listed(request: Request) -> dict[str, Any]:
        return {"faults": _faults(request).listing()}

    @router.put("/{name}", response_model=None)
    async def switch_on(
        request: Request,
        name: str,
        params: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict[str, Any] | JSONResponse:
        try:
            return await _faults(request).switch_on(name, params or {})
        except FaultError as exc:
            return _failed(exc)
        except ValidationError as exc:
            # The app's handler turns this into a 422 naming each bad field.
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
            raise RequestValidationError(errors) from None

    @router.delete("/{name}", response_model=None)
    async def switch_off(request: Request, name: str) -> dict[str, Any] | JSONResponse:
        try:
            return await _faults(request).switch_off(name)
        except FaultError as exc:
            return _failed(exc)

    return router
