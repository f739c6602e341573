"""``dynoscope`` subcommands of the alerts package."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``dynoscope rules check|export`` and ``dynoscope alerts run``."""
    return None
