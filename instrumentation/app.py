"""Wire the instrumentation into the property API (filled by the instrumentation package)."""

from __future__ import annotations

from fastapi import FastAPI

from api.settings import Settings


def instrument_app(app: FastAPI, settings: Settings) -> None:
    """Add metrics, tracing and log correlation to ``app`` as ``settings`` say."""
    return None
