"""``dynoscope fault list|on|off``: switch the faults of a running API (``/admin/faults``).

    dynoscope fault list --url http://127.0.0.1:8000
    dynoscope fault on db_slow --param hold=2 --param period=10 --url http://127.0.0.1:8000
    dynoscope fault off db_slow --url http://127.0.0.1:8000

The admin token comes from ``ADMIN_TOKEN`` in the environment, never from the command line
(where ``ps`` would show it), and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from instrumentation.cli import AddCommand

DEFAULT_URL = "http://127.0.0.1:8000"


class Configured(Protocol):
    @property
    def admin_token(self) -> SecretStr | None: ...


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that reads as JSON (a number, true) is taken as such.

    >>> parse_params(["hold=2.5", "period=10", "note=slow day"])
    {'hold': 2.5, 'period': 10, 'note': 'slow day'}
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _line(fault: dict[str, Any]) -> str:
    state = "on " if fault["active"] else "off"
    parts = [f"{fault['name']:<14} {state}"]
    if fault["active"]:
        parts.append(f"since {fault['since']}  {json.dumps(fault['params'])}")
    figures = {k: v for k, v in fault.items() if k in {"held_mb", "locks", "failures"}}
    if figures and fault["active"]:
        parts.append(" ".join(f"{k}={v}" for k, v in figures.items()))
    if not fault["available"]:
        parts.append(f"(unavailable: {fault['reason']})")
    return "  ".join(parts)


def _call(
    settings: Configured, args: argparse.Namespace, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    if settings.admin_token is None:
        print(f"dynoscope fault {args.fault_command}: set ADMIN_TOKEN", file=sys.stderr)
        return 2, None
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    url = args.url.rstrip("/") + "/admin/faults" + path
    try:
        # Switching an external fault runs a command on the server: allow for its timeout.
        response = httpx.request(method, url, headers=headers, json=body, timeout=660)
    except httpx.HTTPError as exc:
        print(f"dynoscope fault: cannot reach {args.url}: {type(exc).__name__}", file=sys.stderr)
        return 1, None
    try:
        payload = response.json()
    except ValueError:
        payload = {"detail": response.text[:200]}
    if response.status_code >= 400:
        print(
            f"dynoscope fault {args.fault_command}: {_problem(response, payload)}", file=sys.stderr
        )
        if isinstance(payload, dict) and payload.get("output"):
            print(payload["output"], file=sys.stderr, end="")
        return 1, None
    return 0, payload


def _problem(response: httpx.Response, payload: Any) -> str:
    if response.status_code == 404 and not (isinstance(payload, dict) and "name" in payload):
        detail = payload.get("detail", "") if isinstance(payload, dict) else ""
        if detail == "Not Found":
            return "the API has no /admin/faults (is DYNOSCOPE_FAULTS_ENABLED=true there?)"
    detail = payload.get("detail") if isinstance(payload, dict) else None
    return f"{response.status_code} {detail or response.reason_phrase}"


def _list(settings: Configured, args: argparse.Namespace) -> int:
    code, payload = _call(settings, args, "GET", "")
    for fault in payload["faults"] if code == 0 else []:
        print(_line(fault))
    return code


def _on(settings: Configured, args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.param)
    except ValueError as exc:
        print(f"dynoscope fault on: {exc}", file=sys.stderr)
        return 2
    code, payload = _call(settings, args, "PUT", f"/{args.name}", params)
    if code == 0:
        print(_line(payload))
    return code


def _off(settings: Configured, args: argparse.Namespace) -> int:
    code, payload = _call(settings, args, "DELETE", f"/{args.name}")
    if code == 0:
        print(_line(payload))
    return code


def register_faults(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope fault list|on|off``."""
    fault = command(
        commands,
        "fault",
        summary="Switch injected faults of a running API on and off.",
        details="The API must run with DYNOSCOPE_FAULTS_ENABLED=true; ADMIN_TOKEN is read\n"
        "from the environment. Faults and their parameters: docs/faults.md.",
        example="dynoscope fault on db_slow --param hold=2 --param period=10",
    )
    sub = fault.add_subparsers(dest="fault_command", required=True, metavar="COMMAND")
    url = os.environ.get("DYNOSCOPE_URL", DEFAULT_URL)

    def add(name: str, summary: str, example: str, run: Callable[..., int]) -> None:
        parser = command(sub, name, summary=summary, example=example)
        if name != "list":
            parser.add_argument("name", metavar="NAME", help="the fault, e.g. db_slow")
        if name == "on":
            parser.add_argument(
                "--param", action="append", default=[], metavar="K=V", help="a parameter"
            )
        parser.add_argument("--url", default=url, help=f"the API (default: {url})")
        parser.set_defaults(run=run)

    add("list", "List the faults and their state.", "dynoscope fault list", _list)
    add(
        "on",
        "Switch a fault on (again: with new parameters).",
        "dynoscope fault on memory_leak --param rate_mb_per_min=60 --param cap_mb=512",
        _on,
    )
    add("off", "Switch a fault off.", "dynoscope fault off memory_leak", _off)
