"""The faults of one process by name: switch on, switch off, list, close at shutdown.

    faults = Faults([MemoryLeak()])
    await faults.switch_on("memory_leak", {"cap_mb": 64})
    faults.listing()   # [{"name": "memory_leak", "active": True, "since": "...", ...}]

A fault is anything with ``start(params)``/``stop()`` and a pydantic model of its params.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("dynoscope.faults")


class FaultError(Exception):
    """A refusal or failure with its HTTP status and JSON error code."""

    def __init__(self, status_code: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.extra = extra


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fault(Protocol):
    name: str
    params_model: ClassVar[type[BaseModel]]
    # False: the fault is outside this process (a stopped database) and outlives it.
    stops_with_process: bool

    def unavailable(self) -> str | None:
        """Why the fault cannot be switched on here, or None."""

    async def start(self, params: Any) -> None: ...

    async def stop(self) -> None: ...

    def figures(self) -> dict[str, Any]:
        """Live figures for the listing (locks taken, memory held, ...)."""


@dataclass
class _State:
    active: bool = False
    since: datetime | None = None
    params: dict[str, Any] | None = None


class Faults:
    """The faults of one process by name; switching is serialised per fault."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self._faults = {fault.name: fault for fault in faults}
        self._states = {name: _State() for name in self._faults}
        self._locks = {name: asyncio.Lock() for name in self._faults}
        self._gauge: Callable[[str, bool], None] = lambda name, active: None

    @property
    def names(self) -> list[str]:
        return list(self._faults)

    def observe(self, gauge: Callable[[str, bool], None]) -> None:
        """Report every fault's state (now, and on each change) to ``gauge``."""
        self._gauge = gauge
        for name, state in self._states.items():
            gauge(name, state.active)

    def _get(self, name: str) -> Fault:
        fault = self._faults.get(name)
        if fault is None:
            known = ", ".join(sorted(self._faults))
            raise FaultError(404, "not_found", f"no fault named {name!r} (known: {known})")
        return fault

    async def switch_on(self, name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Start ``name`` with ``raw`` params (pydantic ValidationError when bad); switching
        an active fault on again restarts it with the new params."""
        fault = self._get(name)
        reason = fault.unavailable()
        if reason is not None:
            raise FaultError(409, "fault_unavailable", reason)
        params = fault.params_model.model_validate(dict(raw))
        async with self._locks[name]:
            state = self._states[name]
            if state.active and fault.stops_with_process:
                await fault.stop()
                self._set(name, _State())
            await fault.start(params)
            self._set(name, _State(True, datetime.now(UTC), params.model_dump()))
        log.warning("fault %s switched on", name)
        return self.describe(name)

    async def switch_off(self, name: str) -> dict[str, Any]:
        """Stop ``name``; an external fault runs its ``off`` command even if it looks off
        (the process may have restarted since it was switched on)."""
        fault = self._get(name)
        async with self._locks[name]:
            wanted = self._states[name].active or not fault.stops_with_process
            if wanted and fault.unavailable() is None:
                await fault.stop()
            self._set(name, _State())
        log.warning("fault %s switched off", name)
        return self.describe(name)

    def _set(self, name: str, state: _State) -> None:
        self._states[name] = state
        self._gauge(name, state.active)

    def describe(self, name: str) -> dict[str, Any]:
        fault, state = self._faults[name], self._states[name]
        return {
            "name": name,
            "active": state.active,
            "since": state.since.isoformat() if state.since else None,
            "params": state.params,
            "available": fault.unavailable() is None,
            "reason": fault.unavailable(),
            **fault.figures(),
        }

    def listing(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self._faults]

    async def close(self) -> None:
        """Stop this process's own faults (at shutdown): no lock or memory outlives it."""
        for name, fault in self._faults.items():
            if fault.stops_with_process and self._states[name].active:
                await fault.stop()
                self._set(name, _State())
