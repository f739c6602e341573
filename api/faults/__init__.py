"""Fault injection: make this instance, or its dependencies, misbehave on purpose.

Off unless ``DYNOSCOPE_FAULTS_ENABLED=true`` (docs/faults.md); admin-only.

    faults = build_faults(settings)
    await faults.switch_on("memory_leak", {"rate_mb_per_min": 120, "cap_mb": 256})
    faults.listing()   # [{"name": "memory_leak", "active": True, "since": "...", ...}, ...]
    await faults.switch_off("memory_leak")

- ``db_slow`` (``db_slow.py``): a connection of its own holds ``LOCK TABLE properties IN
  ACCESS EXCLUSIVE MODE`` (PostgreSQL) or SQLite's write lock for ``hold`` seconds every
  ``period``.
- ``memory_leak`` (``memory_leak.py``): allocates and keeps memory up to a cap.
- ``db_down``, ``redis_down``, ``instance_kill``, ... (``external.py``): commands from
  ``DYNOSCOPE_FAULT_COMMANDS`` (``commands.py``).

The faults of this process stop with it; external faults stay as their commands left them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.faults.commands import EXTERNAL, load_fault_commands
from api.faults.db_slow import DbSlow
from api.faults.external import ExternalFault
from api.faults.memory_leak import MemoryLeak
from api.faults.registry import Fault, FaultError, Faults

if TYPE_CHECKING:  # the settings import this package's commands file loader
    from api.settings import Settings

__all__ = ["Fault", "FaultError", "Faults", "build_faults"]


def build_faults(settings: Settings) -> Faults:
    """Every fault this deployment offers: built-in ones and those of the commands file."""
    commands = load_fault_commands(settings.fault_commands) if settings.fault_commands else {}
    external = [ExternalFault(name, commands.get(name)) for name in EXTERNAL]
    external += [ExternalFault(n, c) for n, c in commands.items() if n not in EXTERNAL]
    return Faults([DbSlow(settings.database_url), MemoryLeak(), *external])
