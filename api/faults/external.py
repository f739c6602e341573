"""External faults: the deployment's own commands (``DYNOSCOPE_FAULT_COMMANDS``).

fault = ExternalFault("redis_down", FaultCommand("redis_down", on=(...), off=(...)))
await fault.start(NoParams())   # runs ``on``; FaultError (502/500) if it fails
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel

from api.faults.commands import CommandError, FaultCommand, run_command
from api.faults.registry import FaultError, NoParams

log = logging.getLogger("dynoscope.faults")


class ExternalFault:
    """Runs the deployment's ``on``/``off`` command (``DYNOSCOPE_FAULT_COMMANDS``)."""

    params_model: ClassVar[type[BaseModel]] = NoParams
    stops_with_process = False

    def __init__(self, name: str, command: FaultCommand | None) -> None:
        self.name = name
        self._command = command
        self.last_output = ""

    def unavailable(self) -> str | None:
        if self._command is None:
            return f"{self.name} is not configured: add it to DYNOSCOPE_FAULT_COMMANDS"
        return None

    async def start(self, params: NoParams) -> None:
        await self._run("on")

    async def stop(self) -> None:
        await self._run("off")

    async def _run(self, switch: str) -> None:
        assert self._command is not None
        argv = self._command.on if switch == "on" else self._command.off
        timeout = self._command.timeout
        # The argv may hold secrets (passwords, URLs): only the fault's name is logged.
        log.warning("fault %s: running its %s command", self.name, switch)
        try:
            result = await run_command(argv, seconds=timeout)
        except CommandError as exc:
            raise FaultError(
                500, "fault_command_failed", f"{self.name} {switch}: cannot run the command: {exc}"
            ) from None
        self.last_output = result.output
        if result.returncode is None:
            detail = f"{self.name} {switch}: the command timed out after {timeout:g} s"
        elif result.returncode != 0:
            detail = f"{self.name} {switch}: the command exited with status {result.returncode}"
        else:
            return
        log.error("fault %s: %s command failed", self.name, switch)
        raise FaultError(502, "fault_command_failed", detail, output=result.output)

    def figures(self) -> dict[str, Any]:
        return {}
