"""A private redis-server on a loopback port, so a test can take Redis down and bring it back.

How it is run is ``deploy/native/redis_server.py``, shared with ``make stack``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import redis

from deploy.native.postgres import MissingBinary
from deploy.native.redis_server import redis_argv, redis_binary, wait_ready
from tests.support.postgres_cluster import missing
from tests.support.stack import free_port


class RedisServer:
    """Start, stop (keeping a snapshot) and restart a real redis-server."""

    def __init__(self, directory: Path) -> None:
        try:
            self._binary = redis_binary()
        except MissingBinary as exc:
            missing(exc)
        self._directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            redis_argv(self._binary, self.port, self._directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(self.port)

    def stop(self, *, keep_data: bool = True) -> None:
        """Take the server down; with ``keep_data`` it comes back with what it held."""
        if self._process is None:
            return
        if keep_data:
            client = redis.Redis(port=self.port)
            client.save()
            client.close()
        # A paused server takes no signal but SIGCONT and SIGKILL until it is thawed.
        os.kill(self._process.pid, signal.SIGCONT)
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers, as in a
        long pause or a frozen VM."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT)."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)
