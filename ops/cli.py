"""``dynoscope load``: the traffic model against any deployment, from the command line.

dynoscope load --url http://127.0.0.1:8000 --users 50 --duration 60s
dynoscope load --url http://lb:8080 --users 200 --rate 150 --json > run.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from alerts.rules.duration import parse_duration
from instrumentation.cli import AddCommand
from ops.load import DEFAULT_MIX, OPERATIONS, LoadError, LoadOptions, run_load
from ops.load_stats import Recorder, format_summary

NAME = "dynoscope load"


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _think(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use MIN-MAX seconds, e.g. 0.5-1.5") from None


def _mix(text: str) -> dict[str, float]:
    """``browse=60,view=30,create=10``: operations not named get weight 0."""
    weights: dict[str, float] = dict.fromkeys(OPERATIONS, 0.0)
    for part in filter(None, text.split(",")):
        name, _, weight = part.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: use NAME=WEIGHT") from None
    return weights


def options_from(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        url=args.url,
        users=args.users,
        seconds=args.duration,
        rate=args.rate,
        think=args.think,
        mix=args.mix or dict(DEFAULT_MIX),
        seed=args.seed,
        timeout=args.timeout,
        connections=args.connections,
        email=args.email,
        password=args.password,
    )


def progress_line(stream: TextIO) -> Callable[[Recorder, float], None]:
    """A ``run_load`` progress callback rewriting one status line on ``stream``."""
    marks: dict[str, int] = {}
    previous = [0, 0.0]

    def show(recorder: Recorder, elapsed: float) -> None:
        requests = recorder.requests
        rate = (requests - previous[0]) / max(elapsed - previous[1], 1e-9)
        p95 = recorder.recent_p95_ms(marks)
        stream.write(
            f"\r{elapsed:6.1f} s  {requests:>8} requests  {rate:8.1f}/s"
            f"  p95 {p95:7.1f} ms  errors {recorder.errors():>6}"
        )
        stream.flush()
        marks.update(recorder.marks())
        previous[:] = [requests, elapsed]

    return show


def _run(settings: Any, args: argparse.Namespace) -> int:
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = progress_line(sys.stderr) if show else None
    try:
        summary = asyncio.run(run_load(options_from(args), progress=progress))
    except LoadError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if progress is not None:
            sys.stderr.write("\n")
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(format_summary(summary))
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add ``dynoscope load``."""
    load = command(
        commands,
        "load",
        summary="Send realistic, read-heavy traffic to a deployment and summarise it.",
        details="Users browse lists (varied filters and pages), open properties, log in,\n"
        "refresh their token and create and update listings, thinking between requests.\n"
        "Writes log in as --email/--password, or else as a user registered for the run;\n"
        "when neither works they are skipped, counted and said once.\n"
        "Prints requests/s, p50/p95/p99 and errors by status and kind per operation.",
        example="dynoscope load --url http://127.0.0.1:8000 --users 50 --duration 60s",
    )
    load.add_argument("--url", required=True, help="the API's base URL")
    load.add_argument("--users", type=int, default=10, help="concurrent users (default: 10)")
    load.add_argument(
        "--duration", type=_seconds, default=30.0, help="how long: 30, 90s, 5m (default: 30s)"
    )
    load.add_argument("--rate", type=float, help="at most this many requests/s in all")
    load.add_argument(
        "--think",
        type=_think,
        default=(0.5, 1.5),
        help="seconds between a user's requests, MIN-MAX (default: 0.5-1.5)",
    )
    load.add_argument(
        "--mix",
        type=_mix,
        help="operation weights, e.g. browse=63,view=27,login=2,refresh=2,create=2,update=4"
        " (the default)",
    )
    load.add_argument("--seed", type=int, help="random seed, for a repeatable traffic shape")
    load.add_argument("--timeout", type=float, default=10.0, help="per request (default: 10 s)")
    load.add_argument("--connections", type=int, help="connection pool size (default: users, ≤100)")
    load.add_argument("--email", help="log in as this user for writes")
    load.add_argument(
        "--password",
        default=os.environ.get("DYNOSCOPE_LOAD_PASSWORD"),
        help="that user's password (default: DYNOSCOPE_LOAD_PASSWORD, kept out of ps)",
    )
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a status line on stderr each second (default: when stderr is a terminal)",
    )
    load.set_defaults(run=_run, client_only=True)
