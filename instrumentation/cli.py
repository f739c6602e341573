"""dynoscope traces: the slowest recent traces from the trace files, or one as a tree."""

from __future__ import annotations

import argparse
import time
from typing import Protocol

from exporters.tracefile import read_spans
from instrumentation.settings import TelemetrySettings
from instrumentation.traceview import TREE_LEGEND, find_trace, render_tree, slowest


class AddCommand(Protocol):
    """How the host command line adds a subcommand with a summary, details and an example."""

    def __call__(
        self,
        commands: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        *,
        summary: str,
        example: str,
        details: str = "",
    ) -> argparse.ArgumentParser: ...


class Configured(Protocol):
    """What this command needs of the composed settings."""

    @property
    def telemetry(self) -> TelemetrySettings: ...


def _traces(settings: Configured, args: argparse.Namespace) -> int:
    path = args.file or settings.telemetry.traces_file
    spans = read_spans(path)
    if not spans:
        print(
            f"no traces in {path} or its per-worker siblings "
            "(sampled requests are written there in embedded mode)"
        )
        return 1
    if args.trace_id:
        members = find_trace(spans, args.trace_id)
        if not members:
            print(f"no single trace with id {args.trace_id!r} in {path}")
            return 1
        print(render_tree(members))
        print(f"\n{TREE_LEGEND}")
        return 0
    since_ns = time.time_ns() - int(args.since * 60 * 1e9) if args.since else 0
    summaries = slowest(spans, limit=args.limit, since_ns=since_ns)
    if not summaries:
        print(f"no traces from the last {args.since:g} minutes in {path}")
        return 1
    print(f"{'trace id':32}  {'started (UTC)':19}  {'duration':>10}  {'spans':>5}  root")
    for summary in summaries:
        print(
            f"{summary.trace_id:32}  {summary.started:%Y-%m-%d %H:%M:%S}  "
            f"{summary.duration_seconds * 1000:>7.1f} ms  {summary.span_count:>5}  "
            f"{summary.root.name}"
        )
    print("\nshow one: dynoscope traces <trace id or a unique prefix>")
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], command: AddCommand
) -> None:
    """Add this package's subcommands (``dynoscope traces``) to the command line."""
    traces = command(
        commands,
        "traces",
        summary="Show the slowest recent traces, or one trace as a tree of spans.",
        details="Reads DYNOSCOPE_TRACES_FILE and the files beside it that other workers\n"
        "write (traces-1.jsonl, ...): route, SQL, cache calls and their durations.",
        example="dynoscope traces --since 15 --limit 5",
    )
    traces.add_argument("trace_id", nargs="?", help="print this trace (id or unique prefix)")
    traces.add_argument("--limit", type=int, default=10, help="how many traces to list")
    traces.add_argument(
        "--since", type=float, default=60.0, help="only traces from the last N minutes (0: all)"
    )
    traces.add_argument("--file", default=None, help="trace file (default: the settings')")
    traces.set_defaults(run=_traces)
