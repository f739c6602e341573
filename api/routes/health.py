"""Liveness (no dependencies) and readiness (database and Redis, with a timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    timeout = services.settings.readiness_timeout_seconds

    async def database() -> None:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        if services.redis is not None:
            await services.redis.ping()

    checks: dict[str, Any] = {}
    failing: list[str] = []
    for name, check in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            checks[name] = f"timed out after {timeout}s"
            failing.append(name)
        except Exception as exc:
            checks[name] = f"unreachable ({type(exc).__name__})"
            failing.append(name)
        else:
            checks[name] = "ok" if name == "database" or services.redis else "in-process"
    if failing:
        body = {"status": "unavailable", "failing": failing, "checks": checks}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
