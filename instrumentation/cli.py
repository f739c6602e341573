"""``dynoscope`` subcommands of the instrumentation package."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this package's subcommands (``dynoscope traces``) to the command line."""
    return None
