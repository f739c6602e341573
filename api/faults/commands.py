"""External faults: commands the deployment configures to break its own dependencies.

The API cannot know how a deployment runs PostgreSQL or Redis, so ``db_down``,
``redis_down`` and ``instance_kill`` run commands named in a YAML file
(``DYNOSCOPE_FAULT_COMMANDS``)::

    redis_down:
      on: [redis-cli, -p, "6380", shutdown, nosave]
      off: [redis-server, /etc/dynoscope/redis.conf, --daemonize, "yes"]
      timeout: 20        # seconds, optional (default 30)

Each command is an argv list, run without a shell, with a timeout, its output captured.
An argv may carry secrets, so it is never logged; the fault's name is.

    >>> spec = parse_fault_commands({"db_down": {"on": ["true"], "off": ["true"]}}, "f.yml")
    >>> spec["db_down"].on, spec["db_down"].timeout
    (('true',), 30.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Faults the service implements itself: a commands file may not take their names.
BUILT_IN = ("db_slow", "memory_leak")
# External faults every deployment is expected to offer (listed even when not configured).
EXTERNAL = ("db_down", "redis_down", "instance_kill")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
OUTPUT_LIMIT = 4000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_BOOL = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: ``on``, ``off``, ``yes`` and ``no`` stay strings.

    YAML 1.1 reads ``on:`` as the key True, and ``--daemonize yes`` as a boolean.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class FaultCommand:
    """The argv that switches one external fault on, the one that switches it off."""

    name: str
    on: tuple[str, ...]
    off: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed at the timeout
    output: str


class CommandError(Exception):
    """A command could not be started at all (missing binary, no permission)."""


def load_fault_commands(path: Path) -> dict[str, FaultCommand]:
    """Read and check a commands file; ValueError names the file, fault and field."""
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return parse_fault_commands(data if data is not None else {}, str(path))


def parse_fault_commands(data: Any, where: str) -> dict[str, FaultCommand]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a mapping of fault name to {{on, off}}")
    return {str(name): _command(str(name), spec, where) for name, spec in data.items()}


def _command(name: str, spec: Any, where: str) -> FaultCommand:
    at = f"{where}: fault {name!r}"
    if not _NAME.match(name):
        raise ValueError(f"{at}: a name is lower-case letters, digits and _")
    if name in BUILT_IN:
        raise ValueError(f"{at}: built into the service; it cannot be a command")
    if not isinstance(spec, Mapping):
        raise ValueError(f"{at}: must be a mapping with 'on' and 'off'")
    unknown = sorted(set(spec) - {"on", "off", "timeout"})
    if unknown:
        raise ValueError(f"{at}: unknown field {unknown[0]!r} (on, off, timeout)")
    timeout = spec.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError(f"{at}: field 'timeout': must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"{at}: field 'timeout': must be in (0, {MAX_TIMEOUT:g}] seconds")
    return FaultCommand(
        name=name,
        on=_argv(spec.get("on"), f"{at}: field 'on'"),
        off=_argv(spec.get("off"), f"{at}: field 'off'"),
        timeout=float(timeout),
    )


def _argv(value: Any, at: str) -> tuple[str, ...]:
    # A list, never a string: there is no shell to split it, and none should be implied.
    if not isinstance(value, list) or not value:
        raise ValueError(f"{at}: must be a non-empty list (argv, no shell)")
    if not all(
        isinstance(part, str | int | float) and not isinstance(part, bool) for part in value
    ):
        raise ValueError(f"{at}: every argument must be a string")
    return tuple(str(part) for part in value)


async def run_command(argv: tuple[str, ...], *, seconds: float) -> CommandResult:
    """Run ``argv`` (no shell); its output (stdout and stderr) is kept, trimmed to the end.

    >>> asyncio.run(run_command(("echo", "hi"), seconds=5))
    CommandResult(returncode=0, output='hi\\n')
    """
    # A file, not a pipe: a daemon the command starts may keep its output open for ever,
    # and a pipe would then never reach its end.
    with tempfile.TemporaryFile() as sink:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                # Its own session: a daemon it starts is not tied to our signals.
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(type(exc).__name__) from None
        returncode: int | None
        try:
            async with asyncio.timeout(seconds):
                returncode = await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            returncode = None
        size = sink.seek(0, os.SEEK_END)
        sink.seek(max(0, size - OUTPUT_LIMIT))
        output = sink.read().decode(errors="replace")
    return CommandResult(returncode=returncode, output=output)
