"""A private PostgreSQL cluster on a loopback port, for tests that stop the server hard.

Made with ``initdb`` and run with ``pg_ctl`` as the ``postgres`` user (PostgreSQL refuses to
run as root), in a temporary directory, trust auth, its own port and socket directory. Tests
stop it the way production loses a database (``pg_ctl stop -m immediate``: the postmaster
and every backend are killed without a checkpoint) and start it again; the machine's shared
PostgreSQL and other tests never notice.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import reachable
from tests.support.stack import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    message = f"{name} is not installed (Debian package postgresql)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Cluster:
    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = _as_postgres(
            _bin("pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        if result.returncode != 0:
            log = (self.directory / "log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")

    def kill(self) -> None:
        """Stop hard: no checkpoint, connections dropped mid-statement."""
        _as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def up(self) -> bool:
        return reachable("127.0.0.1", self.port)

    def create_database(self, name: str) -> str:
        result = _as_postgres(
            _bin("psql"), "-h", str(self.directory), "-p", str(self.port), "-U", "postgres",
            "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return self.url(name)


@contextlib.contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped and deleted afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="dynoscope-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres")
    cluster = Cluster(directory=directory, port=free_port())
    try:
        result = _as_postgres(
            _bin("initdb"), "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr}")
        cluster.start()
        yield cluster
    finally:
        if cluster.up:
            _as_postgres(_bin("pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)
