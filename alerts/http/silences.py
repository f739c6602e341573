"""Admin routes for quieting alerts, added to the ``/alerts`` router by ``alerts.http.app``.

- ``POST /alerts/silences`` makes a silence (or, with ``every``, a weekly maintenance
  window); ``GET`` lists those not yet ended; ``DELETE /alerts/silences/{id}`` ends one now.
- ``POST /alerts/{fingerprint}/ack`` acknowledges one firing alert: no reminders until it
  resolves.

Bad input is a 422 that names it: a bad matcher or regex, an end before the start, a bad
window. An in-process engine sees a change at once; one elsewhere within two seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.applications import Starlette

from alerts.delivery.notification import iso
from alerts.engine.state import AlertState
from alerts.http.state import engine_state
from alerts.silences.matchers import parse_matcher
from alerts.silences.recurrence import Recurrence
from alerts.silences.silence import Silence, utc
from alerts.silences.store import SilenceStore
from alerts.store.store import Store

log = logging.getLogger("dynoscope.alerts")

# A recurring maintenance window without an end stays for a year unless expired.
RECURRING_DEFAULT = timedelta(days=365)


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


class Quieting:
    """Silences and acknowledgements on the engine of ``app`` (running here, or else read
    through its store): what the admin routes and the console both do. ``HTTPException``
    for what cannot be done, with the API's message."""

    def __init__(self, app: Starlette, store: Callable[[Starlette], Store]) -> None:
        self._app = app
        self._store = store

    def _silences(self) -> SilenceStore:
        monitor = engine_state(self._app).monitor
        if monitor is not None:
            return monitor.silence_store
        return SilenceStore(self._store(self._app).engine)

    async def add(self, body: SilenceIn) -> Silence:
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
        await self._silences().add(silence)
        monitor = engine_state(self._app).monitor
        if monitor is not None:
            monitor.silences.add(silence)  # in force now, not at the next refresh
        log.info("silence %s made by %s", silence.id, silence.author)
        return silence

    async def acknowledge(self, fingerprint: str, body: AckIn) -> Silence:
        monitor = engine_state(self._app).monitor
        if monitor is not None:
            alerts = await monitor.current()
        else:
            alerts = await self._store(self._app).active()
        alert = next((a for a in alerts if a.fingerprint == fingerprint), None)
        if alert is None or alert.state is not AlertState.FIRING:
            raise HTTPException(404, "no firing alert with this fingerprint")
        ack = Silence.acknowledge(
            alert, now=datetime.now(UTC), author=body.author, comment=body.comment
        )
        await self._silences().add(ack)
        if monitor is not None:
            monitor.silences.add(ack)
        log.info("alert %s acknowledged by %s", fingerprint, body.author)
        return ack

    async def current(self) -> list[Silence]:
        return list(await self._silences().current(datetime.now(UTC)))

    async def expire(self, silence_id: str) -> datetime:
        now = datetime.now(UTC)
        if not await self._silences().expire(silence_id, now=now):
            raise HTTPException(404, "no such silence, or it has already ended")
        monitor = engine_state(self._app).monitor
        if monitor is not None:
            await monitor.silences.refresh(now=now)
        return now


def add_silence_routes(router: APIRouter, *, store: Callable[[Starlette], Store]) -> None:
    """``/alerts/silences``: make (POST), list (GET) and expire (DELETE .../{id})."""

    @router.post("/silences", status_code=201)
    async def add(request: Request, body: SilenceIn) -> dict[str, Any]:
        return silence_json(await Quieting(request.app, store).add(body))

    @router.post("/{fingerprint}/ack", status_code=201)
    async def acknowledge(request: Request, fingerprint: str, body: AckIn) -> dict[str, Any]:
        ack = await Quieting(request.app, store).acknowledge(fingerprint, body)
        return {**silence_json(ack), "fingerprint": fingerprint, "episode": iso(ack.episode)}

    @router.get("/silences")
    async def listed(request: Request) -> dict[str, Any]:
        found = await Quieting(request.app, store).current()
        return {"silences": [silence_json(s) for s in found]}

    @router.delete("/silences/{silence_id}")
    async def expire(request: Request, silence_id: str) -> dict[str, Any]:
        now = await Quieting(request.app, store).expire(silence_id)
        return {"expired": silence_id, "ends_at": iso(now)}
