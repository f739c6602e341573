"""ASGI entry point for uvicorn workers: ``uvicorn --factory api.asgi:create``."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings


def create() -> FastAPI:
    return create_app(Settings.from_env())
