"""ASGI entry point for uvicorn workers: ``uvicorn --factory api.asgi:create``."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.logs import configure_logging
from api.settings import Settings


def create() -> FastAPI:
    settings = Settings.from_env()
    # Worker processes start afresh: without this their INFO lines would be lost.
    configure_logging(settings.log_level)
    return create_app(settings)
