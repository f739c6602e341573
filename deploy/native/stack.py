"""The production topology on loopback, without containers: ``make stack``, ``make stack-down``.

>>> stack = start(StackConfig(directory=Path(".stack")))  # doctest: +SKIP
>>> stack.urls["nginx"]  # doctest: +SKIP
'http://127.0.0.1:38211'
>>> stack.kill_instance(2); stack.restart_instance(2); stack.stop()  # doctest: +SKIP

Three API instances (``dynoscope serve``, production mode) behind nginx, two schedulers
(``dynoscope alerts run``) competing for the lease in the alert store, PostgreSQL clusters
(the service's, and the alert store's) and a Redis of the stack's own, Prometheus and
Alertmanager; every port free and chosen at start. Process ids, ports and settings go to
``state.json`` in the stack's directory, the generated secrets to ``secrets.env`` (both
mode 600), logs to ``logs/``. Any process can then stop the stack or switch a fault
(``stack.py fault db_down on --dir .stack``), which is what the admin fault API's commands
(``faults.yml``) run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parents[2])  # not deploy/native: no shadowing

from deploy.native.launch import PROGRAM, start
from deploy.native.topology import FAULTS, Stack, StackConfig, StackError, write_private

__all__ = ["PROGRAM", "Stack", "StackConfig", "StackError", "main", "start", "write_private"]


def describe(stack: Stack) -> str:
    rows = [
        *stack.urls.items(),
        ("secrets", f"{stack.directory / 'secrets.env'} (JWT_SECRET, ADMIN_TOKEN; mode 600)"),
        ("faults", f"{stack.directory / 'faults.yml'} (DYNOSCOPE_FAULT_COMMANDS)"),
        ("logs", f"{stack.directory / 'logs'}/"),
    ]
    return "\n".join(f"  {name:<13} {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description="The production topology on loopback, no containers. Example: "
        "stack.py up --dir .stack; stack.py fault db_down on --dir .stack; stack.py down",
    )
    parser.add_argument("--dir", type=Path, default=Path(".stack"), help="the state directory")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack (says so if it already runs)")
    up.add_argument("--rules", help="rule files (default: the shipped rules)")
    up.add_argument("--scrape-interval", help="e.g. 1s (default: prometheus.yml's)")
    up.add_argument("--properties", type=int, default=500, help="demo properties to seed")
    commands.add_parser("down", help="stop everything the stack started")
    commands.add_parser("status", help="print the URLs of the running stack")
    fault = commands.add_parser("fault", help="switch a fault on or off")
    fault.add_argument("name", choices=FAULTS)
    fault.add_argument("switch", choices=["on", "off"])
    fault.add_argument("--instance", type=int, help="API instance for instance_kill (1-based)")
    for sub in commands.choices.values():
        sub.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except StackError as exc:
        print(f"stack.py: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    if args.command == "up":
        return _up(args, directory)
    stack = Stack.load(directory)
    if args.command == "down":
        stack.stop()
        print(f"stack in {directory} stopped (logs kept in {directory / 'logs'})")
    elif args.command == "status":
        state = "running" if stack.running else "not running"
        print(f"stack in {directory}: {state}\n{describe(stack)}")
    else:
        index = None if args.instance is None else args.instance - 1
        stack.fault(args.name, args.switch == "on", index)
        print(f"fault {args.name} {args.switch}")
    return 0


def _up(args: argparse.Namespace, directory: Path) -> int:
    if (directory / "state.json").exists():
        existing = Stack.load(directory)
        if existing.running:
            print(f"a stack is already running in {directory}:\n{describe(existing)}")
            print("stop it with `make stack-down`")
            return 0
    config = StackConfig(
        directory=directory,
        rules_path=args.rules,
        scrape_interval=args.scrape_interval,
        seed_properties=args.properties,
    )
    print(f"starting the stack in {directory} ...", flush=True)
    try:
        stack = start(config)
    except (StackError, RuntimeError) as exc:
        print(f"stack.py: could not start: {exc}", file=sys.stderr)
        return 1
    print(f"stack running:\n{describe(stack)}\nstop it with `make stack-down`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
