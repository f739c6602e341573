"""The dependency lock: what an environment must hold, and how another one differs from it.

``requirements.lock`` is made by ``make lock`` (uv's ``pip compile``, universal, with hashes)
and installed by ``make install`` with pip's ``--require-hashes``. This module reads it back:

    python -m deploy.lockfile check requirements.lock
        exits 1 naming every package whose installed version is not the lock's, and every
        package installed that the lock does not hold (so a leftover cannot hide);
    python -m deploy.lockfile diff requirements.lock --python .venv-latest/bin/python
        prints, for another interpreter's environment, each package whose version differs
        from the lock (``make test-latest``): drift as a report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Installed by `python -m venv` or by the editable install itself, never by the lock.
NOT_LOCKED = frozenset({"pip", "dynoscope"})

_DUMP = (
    "import json, importlib.metadata as m;"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


class Pin(NamedTuple):
    """One ``name==version`` line of the lock, with the marker that says where it applies."""

    name: str
    version: str
    marker: Marker | None


def read_lock(path: Path) -> list[Pin]:
    """The lock's pins, in file order; hash and comment lines are skipped."""
    pins: list[Pin] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip().removesuffix("\\").strip()
        if not line or line.startswith("--"):
            continue
        requirement = Requirement(line)
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(versions) != 1:
            raise SystemExit(f"{path}:{number}: not an exact pin: {line!r}")
        pins.append(Pin(canonicalize_name(requirement.name), versions[0], requirement.marker))
    return pins


def applicable(pins: Sequence[Pin], environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """Name → version for the pins whose marker holds in ``environment`` (default: this one)."""
    chosen: dict[str, str] = {}
    for pin in pins:
        if pin.marker is None or pin.marker.evaluate(dict(environment) if environment else None):
            chosen[pin.name] = pin.version
    return chosen


def installed(python: str | None = None) -> dict[str, str]:
    """Name → version of every distribution in this environment or in ``python``'s."""
    if python is None:
        found = {dist.metadata["Name"]: dist.version for dist in metadata.distributions()}
    else:
        output = subprocess.run(  # noqa: S603 - the interpreter the Makefile names
            [python, "-c", _DUMP], check=True, capture_output=True, text=True
        ).stdout
        found = json.loads(output)
    return {canonicalize_name(name): version for name, version in found.items()}


def differences(locked: Mapping[str, str], present: Mapping[str, str]) -> list[str]:
    """One line per package that is missing, extra, or at another version than the lock's."""
    lines: list[str] = []
    for name in sorted(set(locked) | set(present)):
        if name in NOT_LOCKED:
            continue
        want, have = locked.get(name), present.get(name)
        if want == have:
            continue
        lines.append(f"{name}: lock {want or '(not locked)'}, installed {have or '(missing)'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.lockfile", description=__doc__)
    parser.add_argument("action", choices=["check", "diff"])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--python", help="the interpreter whose environment to compare")
    args = parser.parse_args(argv)
    locked = applicable(read_lock(args.lock))
    lines = differences(locked, installed(args.python))
    if args.action == "check":
        for line in lines:
            print(f"{args.lock}: {line}", file=sys.stderr)
        return 1 if lines else 0
    print(f"{len(lines)} package(s) differ from {args.lock}:" if lines else "same as the lock")
    for line in lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
