"""Process-wide logging set-up for the command line."""

from __future__ import annotations

import logging

# Libraries that narrate their own work at INFO (httpx: one line per request, which floods
# `dynoscope load`; alembic: every migration step; apscheduler: every job run). They speak
# at WARNING and above unless LOG_LEVEL=DEBUG asks for everything.
CHATTY = ("httpx", "httpcore", "alembic", "apscheduler", "asyncio")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if level.upper() != "DEBUG":
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
