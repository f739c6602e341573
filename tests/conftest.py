"""Fixtures shared by every test package: real databases and key prefixes per run."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support.services import POSTGRES_ADMIN_DSN, REDIS_URL, require

pytest_plugins = ["tests.support.hermetic"]

SQLITE = "sqlite"
POSTGRES_REDIS = "postgres+redis"

# Hypothesis keeps no example database (its examples come from the seed), and its other
# caches go to a directory of the run's own, outside the repository, removed at the end.
hypothesis_settings.register_profile("dynoscope", database=None, print_blob=True)
hypothesis_settings.load_profile("dynoscope")
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="dynoscope-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped with SIGTERM (a CI time limit, ``timeout``, ``kill``) still tears down.

    By default SIGTERM ends the process at once, leaving what session fixtures started (the
    scenario tests' native stack: API instances, PostgreSQL clusters, Redis, Prometheus,
    nginx) running. As an interrupt, pytest stops the test in progress and runs the teardowns.
    """

    def interrupt(signum: int, _: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)


def run_blocking(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on a private loop, also from inside a running one."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


async def _admin(dsn: str, *statements: str) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return [await connection.fetch(sql) for sql in statements]
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def postgres_database(run_id: str) -> Iterator[str]:
    """A database created for this test run and dropped after it; yields its URL."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"dynoscope_test_{run_id}"
    admin = f"{POSTGRES_ADMIN_DSN}/postgres"
    run_blocking(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_DSN}/{name}"
    finally:
        run_blocking(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clean_postgres(postgres_database: str) -> str:
    """The run's database with every table emptied before the test."""
    (tables,) = run_blocking(
        _admin(
            postgres_database,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename NOT IN ('alembic_version', 'dynoscope_alerts_version')",
        )
    )
    if tables:
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        run_blocking(_admin(postgres_database, f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return postgres_database


@pytest.fixture
def redis_prefix(run_id: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    require("Redis", "127.0.0.1", 6379)
    prefix = f"dynoscope-test:{run_id}:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=[SQLITE, POSTGRES_REDIS])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


BASE_ENVIRON = {
    "DYNOSCOPE_ENV": "test",
    "JWT_SECRET": "test-secret-" + "x" * 32,
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture
def sqlite_environ(tmp_path: Path) -> dict[str, str]:
    return {
        **BASE_ENVIRON,
        "DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
    }


@pytest.fixture
def shared_environ(clean_postgres: str, redis_prefix: str, tmp_path: Path) -> dict[str, str]:
    """PostgreSQL + Redis: what several instances of one deployment share."""
    return {
        **BASE_ENVIRON,
        "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
        "DATABASE_URL": clean_postgres,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
    }


@pytest.fixture
def environ(stack: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for the app under test on the chosen stack (each test runs on both)."""
    name = "sqlite_environ" if stack == SQLITE else "shared_environ"
    value: dict[str, str] = request.getfixturevalue(name)
    return value
