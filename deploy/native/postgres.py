"""A private PostgreSQL cluster on a loopback port, shared by ``make stack`` and the tests.

>>> cluster = Cluster(Path("/tmp/dynoscope-pg"), port=55432)  # doctest: +SKIP
>>> cluster.create(); cluster.start(); cluster.url("postgres")  # doctest: +SKIP
'postgresql://postgres@127.0.0.1:55432/postgres'

Made with ``initdb`` and run with ``pg_ctl`` as the ``postgres`` user (PostgreSQL refuses to
run as root), trust auth, its own port and socket directory. ``kill`` stops it the way
production loses a database (``pg_ctl stop -m immediate``: the postmaster and every backend
are killed without a checkpoint); ``start`` brings it back with its data.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


class MissingBinary(RuntimeError):
    """A program the stack needs is not installed (the message names its Debian package)."""


def pg_bin(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (``initdb``, ``pg_ctl``, ``psql``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise MissingBinary(f"{name} is not installed (Debian package postgresql)")
    return found[-1]


def as_postgres(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``args`` as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # Our own argv (pg_ctl, psql, initdb), no shell.
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    """A cluster whose data, socket and log live in ``directory``."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        """``initdb`` into an empty ``directory`` (made and handed to ``postgres`` if root)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, user="postgres")
        result = as_postgres(
            pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = as_postgres(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "start",
        )  # fmt: skip
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{log}")

    def kill(self) -> None:
        """Stop hard: no checkpoint, connections dropped mid-statement."""
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Stop cleanly (``-m fast``: sessions ended, a checkpoint written)."""
        as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def up(self) -> bool:
        return reachable("127.0.0.1", self.port)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (first line of ``postmaster.pid``)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def psql(self, sql: str, database: str = "postgres", user: str = "postgres") -> str:
        """Run ``sql`` (one or more statements) as ``user``; its output."""
        result = as_postgres(
            pg_bin("psql"), "-h", str(self.directory), "-p", str(self.port), "-U", user,
            "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)
