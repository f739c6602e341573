"""Silences in the alert store: made, listed and expired from any process (API, CLI, engine).

store = SilenceStore(engine)
await store.add(silence)
await store.current(now)          # not yet ended, soonest-ending first
await store.expire(silence.id, now=now)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from alerts.silences.matchers import Matcher
from alerts.silences.recurrence import Recurrence
from alerts.silences.silence import Silence
from alerts.store.schema import silences


def _silence_row(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "matchers": [[m.label, "=~" if m.regex else "=", m.value] for m in silence.matchers],
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "author": silence.author,
        "comment": silence.comment,
        "created_at": silence.created_at,
        "fingerprint": silence.fingerprint,
        "episode": silence.episode,
        "recurrence": silence.recurrence.to_json() if silence.recurrence else None,
    }


def _silence(row: Any) -> Silence:
    return Silence(
        id=row.id,
        matchers=tuple(Matcher(label, value, op == "=~") for label, op, value in row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        author=row.author,
        comment=row.comment,
        created_at=row.created_at,
        fingerprint=row.fingerprint,
        episode=row.episode,
        recurrence=Recurrence.from_json(row.recurrence) if row.recurrence else None,
    )


class SilenceStore:
    """Silences in the store: made, listed and expired from any process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, silence: Silence) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(insert(silences).values(_silence_row(silence)))

    async def current(self, now: datetime) -> list[Silence]:
        """Silences not yet ended (active or starting later), soonest-ending first."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(silences).where(silences.c.ends_at > now).order_by(silences.c.ends_at)
            )
            return [_silence(row) for row in rows]

    async def expire(self, silence_id: str, *, now: datetime) -> bool:
        """End a silence now; False when there is no such silence still running."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(silences)
                .where(silences.c.id == silence_id, silences.c.ends_at > now)
                .values(ends_at=now)
            )
            return bool(result.rowcount)
