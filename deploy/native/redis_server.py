"""A private redis-server on a loopback port, shared by ``make stack`` and the tests.

>>> redis_argv("/usr/bin/redis-server", 56379, Path("/tmp/r"))[:3]
['/usr/bin/redis-server', '--port', '56379']
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from deploy.native.postgres import MissingBinary


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingBinary("redis-server is not installed (Debian package redis-server)")
    return binary


def redis_argv(binary: str, port: int, directory: Path) -> list[str]:
    """Loopback only, no persistence unless asked (``SAVE``), its files in ``directory``."""
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--dbfilename", "snapshot.rdb",
    ]  # fmt: skip


def wait_ready(port: int, *, seconds: float = 5) -> None:
    """Return once the server on ``port`` answers PING; raise after ``seconds``."""
    deadline = time.monotonic() + seconds
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()
