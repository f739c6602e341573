"""``deploy/native/stack.py`` from the command line, on the session's running stack: what
``make stack`` says the second time, the files it keeps, and the ``fault`` subcommand the
admin fault API runs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import httpx
import pytest
import yaml

from deploy.native.processes import alive
from deploy.native.stack import PROGRAM, Stack
from tests.scenarios.conftest import Session
from tests.scenarios.test_scenarios import quiet, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.prometheus,
    pytest.mark.timeout(300),
    # Faults stop and start the session's stack: its processes are checked when the run ends.
    pytest.mark.shared_processes,
]


def stack_py(session: Session, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(PROGRAM), *args, "--dir", str(session.stack.directory)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_a_second_start_says_it_is_running_and_prints_no_secret(native: Session) -> None:
    result = stack_py(native, "up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert native.stack.urls["nginx"] in result.stdout
    for value in native.stack.secrets().values():
        assert value not in result.stdout + result.stderr
    assert "secrets.env" in result.stdout


def test_state_and_secrets_are_private_and_the_state_holds_no_secret(native: Session) -> None:
    directory = native.stack.directory
    for name in ("state.json", "secrets.env"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    state = (directory / "state.json").read_text()
    assert all(value not in state for value in native.stack.secrets().values())
    assert json.loads(state)["urls"] == native.stack.urls


def test_the_fault_command_kills_and_restarts_an_instance(native: Session) -> None:
    quiet(native)
    faults = yaml.safe_load((native.stack.directory / "faults.yml").read_text())
    on = subprocess.run(faults["instance_kill"]["on"], capture_output=True, text=True, check=False)
    assert on.returncode == 0, on.stderr
    last = native.stack.instances[-1]
    killed = native.stack.pids[last]
    assert not alive(killed)
    assert last not in Stack.load(native.stack.directory).pids
    off = subprocess.run(
        faults["instance_kill"]["off"], capture_output=True, text=True, check=False
    )
    assert off.returncode == 0, off.stderr
    restarted = Stack.load(native.stack.directory).pids[last]
    assert restarted != killed and alive(restarted)
    assert httpx.get(f"{native.stack.urls[last]}/readyz", timeout=5).status_code == 200
    native.stack.pids = Stack.load(native.stack.directory).pids
    quiet(native)


def test_an_unknown_fault_is_refused_with_the_known_ones(native: Session) -> None:
    result = stack_py(native, "fault", "disk_full", "on")
    assert result.returncode == 2
    assert "db_down" in result.stderr


def test_the_db_fault_stops_and_starts_the_services_cluster(native: Session) -> None:
    quiet(native)
    assert stack_py(native, "fault", "db_down", "on").returncode == 0
    try:
        assert not native.stack.cluster.up
        assert native.stack.store_cluster.up  # the alert store lives elsewhere
    finally:
        assert stack_py(native, "fault", "db_down", "off").returncode == 0
    wait_for(lambda: native.stack.cluster.up, seconds=10, what="the cluster back")
    quiet(native)
