"""The development session's admin token: made by ``serve`` for the run, in a file only its
owner reads, adopted by the other commands, never made or read outside development."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.settings import Settings, SettingsError
from dynoscope.session import adopt_session_token, session_token


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


def test_a_later_runs_file_is_not_removed_and_an_old_files_mode_is_tightened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "admin-token"
    path.parent.mkdir()
    path.write_text("left by an earlier run\n")
    path.chmod(0o644)
    with session_token(_environ(tmp_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.write_text("a later run's token\n")
    assert path.read_text() == "a later run's token\n"


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
