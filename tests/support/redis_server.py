"""A private redis-server on a loopback port, so a test can take Redis down and bring it back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.support.stack import free_port


class RedisServer:
    """Start, stop (keeping a snapshot) and restart a real redis-server."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(message)
            pytest.skip(message)
        self._binary = binary
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
                "--dbfilename",
                "snapshot.rdb",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
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

    def stop(self, *, keep_data: bool = True) -> None:
        """Take the server down; with ``keep_data`` it comes back with what it held."""
        if self._process is None:
            return
        if keep_data:
            client = redis.Redis(port=self.port)
            client.save()
            client.close()
        self._process.terminate()
        self._process.wait(timeout=5)
        self._process = None
