"""``memory_leak``: this process allocates memory and keeps it, until switched off.

leak = MemoryLeak()
await leak.start(MemoryLeakParams(rate_mb_per_min=60, cap_mb=256))
leak.figures()   # {"held_mb": 1.0} a second later, 256.0 after about four minutes
await leak.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

MEGABYTE = 1024 * 1024


class MemoryLeakParams(BaseModel):
    """``{"rate_mb_per_min": 60, "cap_mb": 256}``."""

    model_config = ConfigDict(extra="forbid")

    rate_mb_per_min: float = Field(default=60.0, gt=0, le=60_000)
    cap_mb: int = Field(default=256, ge=1, le=16_384)


class MemoryLeak:
    """Allocates ``rate_mb_per_min`` and keeps it, up to ``cap_mb``; stopping frees it all."""

    name = "memory_leak"
    params_model: ClassVar[type[BaseModel]] = MemoryLeakParams
    stops_with_process = True

    def __init__(self, *, tick: float = 0.25) -> None:
        self._tick = tick
        self._chunks: list[bytes] = []
        self._held = 0
        self._task: asyncio.Task[None] | None = None

    def unavailable(self) -> str | None:
        return None

    async def start(self, params: MemoryLeakParams) -> None:
        self._task = asyncio.create_task(self._grow(params), name="fault-memory_leak")

    async def _grow(self, params: MemoryLeakParams) -> None:
        cap = params.cap_mb * MEGABYTE
        per_tick = params.rate_mb_per_min * MEGABYTE * self._tick / 60
        owed = 0.0
        while self._held < cap:
            owed += per_tick
            size = min(int(owed), cap - self._held)
            if size > 0:
                # Filled, not just reserved: untouched pages would not count as resident.
                self._chunks.append(b"\xa5" * size)
                self._held += size
                owed -= size
            await asyncio.sleep(self._tick)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._chunks.clear()
        self._held = 0

    def figures(self) -> dict[str, Any]:
        return {"held_mb": round(self._held / MEGABYTE, 1)}
