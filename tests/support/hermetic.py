"""A pytest plugin that fails whatever a test leaves behind for another test to see.

- Per test (an autouse fixture): a child process still running, an environment variable
  added, changed or removed, or a changed working directory. The leak is undone (the process
  killed, the environment and directory restored) so one leak stays one failure.
- Per run: a file that appeared in the repository tree (tests write under ``tmp_path``), and
  a child process still running once every fixture is torn down.

A test marked ``shared_processes`` stops and starts processes that a session-wide fixture owns
(the scenario tests' native stack restarts its Redis and its instances): the processes it
leaves are that fixture's, checked by the per-run check instead of killed as the test's.

Loaded by ``tests/conftest.py``; ``tests/test_hermetic.py`` runs it on leaking tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
# What installing, linting and byte-compiling make in the tree; nothing else may appear.
BUILD_OUTPUT = frozenset(
    {
        ".git",
        ".venv",
        ".venv-latest",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        "dynoscope.egg-info",
    }
)

# pytest itself names the running test and phase here.
OWN_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})

_TREE = pytest.StashKey[set[Path]]()
_LEFT = pytest.StashKey[list[str]]()


def tree_files(root: Path = REPOSITORY) -> set[Path]:
    """Every file under ``root``, relative to it, less what installing and linting make."""
    found: set[Path] = set()
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name not in BUILD_OUTPUT]
        found.update(Path(directory, name).relative_to(root) for name in files)
    return found


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "shared_processes: the test restarts processes a session-wide fixture owns; "
        "they are checked when the run ends",
    )
    config.stash[_TREE] = tree_files()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that leaves a file in the repository tree or a process running fails."""
    before = session.config.stash.get(_TREE, None)
    if before is None:
        return
    problems: list[str] = []
    left = sorted(tree_files() - before)
    if left:
        names = ", ".join(str(path) for path in left[:20])
        problems.append(f"the run left {len(left)} file(s) in the tree: {names}")
    running = live_children()
    if running:
        problems.append(f"the run left processes running: {_describe(running)}")
        _kill(running)
    if problems:
        session.config.stash[_LEFT] = problems
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for problem in terminalreporter.config.stash.get(_LEFT, []):
        terminalreporter.write_line(f"FAILED (hermetic): {problem}", red=True)


def _describe(processes: dict[tuple[int, float], str]) -> str:
    return "; ".join(f"pid {pid} ({command})" for (pid, _), command in processes.items())


def _kill(processes: dict[tuple[int, float], str]) -> None:
    for pid, _ in processes:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def live_children() -> dict[tuple[int, float], str]:
    """This process's running descendants (a zombie is reaped later, not a leak)."""
    found: dict[tuple[int, float], str] = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                found[(child.pid, child.create_time())] = " ".join(child.cmdline()[:4])
    return found


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in OWN_VARIABLES}


@pytest.fixture(autouse=True)
def _hermetic(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test that leaks a child process, an environment variable or a cwd change.

    Autouse and function-scoped, so it is set up after the wider fixtures the test uses (their
    processes are not the test's) and torn down after the test's own fixtures: whatever is
    still there then was left behind by the test or one of its fixtures.
    """
    children = live_children()
    environ = _environment()
    cwd = os.getcwd()
    yield
    problems: list[str] = []
    if os.getcwd() != cwd:
        problems.append(f"working directory changed to {os.getcwd()}")
        os.chdir(cwd)
    now = _environment()
    changed = sorted(name for name in set(environ) | set(now) if environ.get(name) != now.get(name))
    if changed:
        problems.append(f"environment variables changed: {', '.join(changed)}")
        for name in changed:
            if name in environ:
                os.environ[name] = environ[name]
            else:
                del os.environ[name]
    leaked = {key: command for key, command in live_children().items() if key not in children}
    if leaked and request.node.get_closest_marker("shared_processes") is None:
        problems.append(f"child processes left running: {_describe(leaked)}")
        _kill(leaked)
    if problems:
        pytest.fail(f"{request.node.nodeid} is not hermetic: " + "; ".join(problems))
