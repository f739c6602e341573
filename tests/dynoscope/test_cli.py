"""The quick start as a user runs it: migrate, seed, serve, list."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.stack import free_port

DYNOSCOPE = [sys.executable, "-m", "dynoscope"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "JWT", "REDIS"))}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/quick.db",
            "DYNOSCOPE_TRACES_FILE": str(tmp_path / "traces.jsonl"),
            "LOG_LEVEL": "INFO",
        },
        **extra,
    )
    return env


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DYNOSCOPE, *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_upgrade_seed_and_serve_the_demo_data(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    assert _run(tmp_path, "db", "upgrade").returncode == 0  # idempotent
    seeded = _run(tmp_path, "seed", "--properties", "25", "--if-empty")
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded 25 demo properties" in seeded.stderr
    again = _run(tmp_path, "seed", "--properties", "25", "--if-empty")
    assert "nothing seeded" in again.stderr

    port = free_port()
    server = subprocess.Popen(
        [*DYNOSCOPE, "serve", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/properties?limit=100", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        assert len(response.json()["items"]) == 25
    finally:
        server.terminate()
        try:
            output, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "database=sqlite cache=in-process (not production-safe) mode=development" in output


def test_production_mode_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = _run(tmp_path, "serve", DYNOSCOPE_ENV="production")
    assert result.returncode == 2
    assert "JWT_SECRET: production mode refuses to start" in result.stderr
