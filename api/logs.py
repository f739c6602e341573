"""Process-wide logging set-up for the command line."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Alembic announces each of its plugins at INFO on every start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
