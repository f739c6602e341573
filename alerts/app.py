"""Wire the alert engine into the property API (filled by the alerts package)."""

from __future__ import annotations

from fastapi import FastAPI

from api.settings import Settings


def attach_alerts(app: FastAPI, settings: Settings) -> None:
    """Add ``/alerts`` routes and, in embedded mode, the in-process scheduler."""
    return None
