"""Start, watch and stop the stack's processes by id, from any process that knows the id.

>>> pid = spawn(["sleep", "30"], log=Path("/tmp/sleep.log"), env={})  # doctest: +SKIP
>>> alive(pid), terminate(pid), alive(pid)  # doctest: +SKIP
(True, None, False)

Each process gets a session of its own, so it outlives ``make stack`` and a Ctrl-C in that
terminal does not reach it; ``make stack-down`` ends it by the id in the state file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx


def spawn(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path | None = None
) -> int:
    """Start ``argv`` detached, its output appended to ``log``; its process id."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - argv from the stack, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return process.pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a dead child of this process is reaped, not taken for alive."""
    if pid <= 0:  # 0 and -1 mean process groups and "any child" to waitpid and kill
        raise ValueError(f"not a process id: {pid}")
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Dead but not yet reaped by its parent (an init that never reaps keeps these)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def terminate(pid: int, *, seconds: float = 15, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` and wait for the end; SIGKILL after ``seconds``."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not alive(pid), seconds=seconds):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not alive(pid), seconds=5)


def wait_until(condition: Callable[[], bool], *, seconds: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_http(name: str, url: str, pid: int, log: Path, *, seconds: float = 60) -> None:
    """Return once ``url`` answers 200; fail early, with the log's tail, if ``pid`` dies."""

    def ready() -> bool:
        if not alive(pid):
            raise RuntimeError(f"{name} exited at start; its log ({log}):\n{tail(log)}")
        return http_ok(url)

    if not wait_until(ready, seconds=seconds, step=0.1):
        raise RuntimeError(f"{name} not ready at {url} within {seconds:g} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def program(name: str, package: str) -> str:
    """Path of an installed program (also in the sbin directories a non-root PATH lacks)."""
    import shutil

    from deploy.native.postgres import MissingBinary

    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise MissingBinary(f"{name} is not installed (Debian package {package})")
