"""What the alert engine shares with the app it is served in, reached through one typed door.

The app that embeds the engine sets ``engine_state(app).monitor`` (the engine runs in this
process) or ``engine_state(app).store`` (it only reads the engine's store); the routes read
them back the same way. No other attribute of ``app.state`` is the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from alerts.engine.monitor import Monitor
from alerts.store.store import Store

_STATE = "dynoscope_alerts"


@dataclass
class EngineState:
    """The engine running in this process, or else the store it is read from (or neither)."""

    monitor: Monitor | None = None
    store: Store | None = None


def engine_state(app: Starlette) -> EngineState:
    """The engine's state on ``app``, made empty on first use."""
    state: EngineState | None = getattr(app.state, _STATE, None)
    if state is None:
        state = EngineState()
        setattr(app.state, _STATE, state)
    return state
