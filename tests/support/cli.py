"""``dynoscope`` run as a separate process, as a user runs it."""

from __future__ import annotations

import asyncio
import sys


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``dynoscope ARGS``."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "dynoscope", *args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
