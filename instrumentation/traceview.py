"""Read traces back from the trace file: the slowest recent ones, and one as a span tree."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from exporters.tracefile import SpanRecord

TREE_LEGEND = (
    "each line: span name, how long it took (ms), (+ms) when it started after the trace "
    "began, then its attributes"
)

# Attributes worth a place on a tree line, in this order.
_DETAILS = (
    "http.response.status_code",
    "db.query.text",
    "cache.result",
    "error.type",
)


@dataclass(frozen=True)
class TraceSummary:
    """One trace in the listing."""

    trace_id: str
    root: SpanRecord
    span_count: int

    @property
    def duration_seconds(self) -> float:
        return self.root.duration_seconds

    @property
    def started(self) -> datetime:
        return datetime.fromtimestamp(self.root.start_ns / 1e9, tz=UTC)


def _by_trace(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    traces: dict[str, list[SpanRecord]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def _root(spans: list[SpanRecord]) -> SpanRecord:
    ids = {span.span_id for span in spans}
    orphans = [span for span in spans if not span.parent_id or span.parent_id not in ids]
    return min(orphans or spans, key=lambda span: span.start_ns)


def slowest(
    spans: Iterable[SpanRecord], *, limit: int = 10, since_ns: int = 0
) -> list[TraceSummary]:
    """The ``limit`` slowest traces whose root started at or after ``since_ns``."""
    summaries = []
    for trace_id, members in _by_trace(spans).items():
        root = _root(members)
        if root.start_ns >= since_ns:
            summaries.append(TraceSummary(trace_id=trace_id, root=root, span_count=len(members)))
    summaries.sort(key=lambda summary: summary.duration_seconds, reverse=True)
    return summaries[:limit]


def find_trace(spans: Iterable[SpanRecord], trace_id: str) -> list[SpanRecord]:
    """The spans of the trace whose id is ``trace_id`` or starts with it (unique prefix)."""
    traces = _by_trace(spans)
    if trace_id in traces:
        return traces[trace_id]
    matches = [key for key in traces if key.startswith(trace_id.lower())]
    return traces[matches[0]] if len(matches) == 1 else []


def _short(value: object, width: int = 120) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _line(span: SpanRecord, origin_ns: int) -> str:
    offset_ms = (span.start_ns - origin_ns) / 1e6
    details = [
        f"{key}={_short(span.attributes[key])}" for key in _DETAILS if key in span.attributes
    ]
    if span.status_code == 2 and "error.type" not in span.attributes:
        details.append("error")
    suffix = f"  [{', '.join(details)}]" if details else ""
    return f"{span.name}  {span.duration_seconds * 1000:.1f} ms  (+{offset_ms:.1f} ms){suffix}"


def render_tree(spans: list[SpanRecord]) -> str:
    """The trace as an indented tree, children in start order, durations in milliseconds."""
    if not spans:
        return ""
    children: dict[str, list[SpanRecord]] = {}
    ids = {span.span_id for span in spans}
    roots = []
    for span in sorted(spans, key=lambda span: span.start_ns):
        if span.parent_id and span.parent_id in ids:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    origin = min(span.start_ns for span in spans)
    lines: list[str] = []

    def walk(span: SpanRecord, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(prefix + branch + _line(span, origin))
        below = children.get(span.span_id, [])
        deeper = prefix if top else prefix + ("   " if last else "│  ")
        for index, child in enumerate(below):
            walk(child, deeper, index == len(below) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return "\n".join(lines)
