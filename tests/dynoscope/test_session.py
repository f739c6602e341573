"""The development session's admin token: made by ``serve`` for the run, in a file only its
owner reads, adopted by the other commands, never made or read outside development."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
from pathlib import Path

import httpx
import pytest

from api.settings import Settings, SettingsError
from dynoscope.session import adopt_session_token, session_token
from tests.support.cli import run_cli
from tests.support.stack import free_port


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DYNOSCOPE_TRACES_FILE": str(tmp_path / "var" / "traces.jsonl"), **extra}


def test_serve_makes_a_token_for_the_run_and_takes_it_away(tmp_path: Path) -> None:
    environ = _environ(tmp_path)
    with session_token(environ) as path:
        assert path == tmp_path / "var" / "admin-token"
        token = path.read_text().strip()
        assert len(token) >= 32 and environ["ADMIN_TOKEN"] == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # Every other command of this environment finds it; the settings admit it.
        adopted = adopt_session_token(_environ(tmp_path))
        assert adopted["ADMIN_TOKEN"] == token
        assert Settings.from_env(adopted).admin_token is not None
    assert not path.exists() and "ADMIN_TOKEN" not in environ
    assert "ADMIN_TOKEN" not in adopt_session_token(_environ(tmp_path))


def test_a_second_serve_shares_the_running_ones_token_and_leaves_its_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "admin-token"
    path.parent.mkdir()
    path.write_text("left by a run that crashed\n")
    path.chmod(0o644)
    first, second = _environ(tmp_path), _environ(tmp_path)
    with session_token(first):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an old file's mode tightened
        assert first["ADMIN_TOKEN"] != "left by a run that crashed"
        with session_token(second) as shared:
            assert shared == path and second["ADMIN_TOKEN"] == first["ADMIN_TOKEN"]
        assert path.read_text().strip() == first["ADMIN_TOKEN"]  # still the first run's
    assert not path.exists()


def test_the_token_goes_to_this_host_only(tmp_path: Path) -> None:
    environ = _environ(tmp_path)
    with session_token(environ):
        here = adopt_session_token(_environ(tmp_path), url="http://127.0.0.1:8000")
        assert here["ADMIN_TOKEN"] == environ["ADMIN_TOKEN"]
        away = adopt_session_token(_environ(tmp_path), url="http://api.example:8000")
        assert "ADMIN_TOKEN" not in away


@pytest.mark.parametrize(
    "extra",
    [
        {"ADMIN_TOKEN": "given-by-the-environment-123"},
        {"DYNOSCOPE_ENV": "production"},
        {"DYNOSCOPE_ENV": "test"},
    ],
)
def test_nothing_is_made_or_read_with_a_token_given_or_outside_development(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    path = tmp_path / "var" / "admin-token"
    environ = _environ(tmp_path, **extra)
    with session_token(environ) as made:
        assert made is None and not path.exists()
        assert environ.get("ADMIN_TOKEN") == extra.get("ADMIN_TOKEN")
    path.parent.mkdir()
    path.write_text("a session token\n")
    assert adopt_session_token(environ).get("ADMIN_TOKEN") == extra.get("ADMIN_TOKEN")


def test_faults_need_a_token_everywhere_but_in_development(tmp_path: Path) -> None:
    development = Settings.from_env(_environ(tmp_path, DYNOSCOPE_FAULTS_ENABLED="true"))
    assert development.faults_enabled and development.admin_token is None
    with pytest.raises(SettingsError, match="fault injection needs ADMIN_TOKEN"):
        Settings.from_env(_environ(tmp_path, DYNOSCOPE_FAULTS_ENABLED="true", DYNOSCOPE_ENV="test"))


async def test_serve_says_where_the_token_is_never_what_it_is_and_removes_it_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DYNOSCOPE", "ADMIN", "PROMETHEUS", "REDIS", "DATABASE"))
    }
    environ.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/api.db",
        DYNOSCOPE_TRACES_FILE=str(tmp_path / "var" / "traces.jsonl"),
        DYNOSCOPE_FAULTS_ENABLED="true",
        LOG_LEVEL="INFO",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dynoscope", "serve", "--port", str(port),
        env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    path = tmp_path / "var" / "admin-token"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _until_ready(client, process)
            token = path.read_text().strip()
            admin = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/alerts", headers=admin)).status_code == 200
            assert (await client.get("/admin/faults", headers=admin)).status_code == 200
        # Another command of the same environment reaches the admin routes with nothing set.
        code, out, err = await run_cli(
            "fault", "list", "--url", f"http://127.0.0.1:{port}", env=environ
        )
        assert code == 0 and out.startswith("db_slow"), err
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    log = stderr.decode()
    assert f"Bearer token in {path}" in log and token not in log
    assert "database=sqlite cache=in-process" in log.splitlines()[0], log.splitlines()[0]
    assert not path.exists()  # removed at exit, though uvicorn raises SIGTERM again
    assert process.returncode == 128 + signal.SIGTERM


async def _until_ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        assert process.returncode is None, "serve exited"
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("serve did not answer /healthz within 30 s")
