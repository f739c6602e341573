"""Sampled spans in a local file, one OTLP/JSON ``TracesData`` object per line.

Embedded mode has no trace backend. The file uses the OTLP JSON encoding (the OpenTelemetry
Collector's file exporter writes the same), so it can be replayed into Jaeger or Tempo later.
It is bounded: past ``max_bytes`` it is rotated once to ``<name>.1``. Several worker processes
may append to it: each batch is one ``write`` on a file opened with ``O_APPEND``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring as _string
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("dynoscope.traces")

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def _any_value(value: Any) -> str:
    if isinstance(value, bool):
        return '{"boolValue":true}' if value else '{"boolValue":false}'
    if isinstance(value, int):
        return f'{{"intValue":"{value}"}}'
    if isinstance(value, float):
        return f'{{"doubleValue":{json.dumps(value)}}}'
    if isinstance(value, (list, tuple)):
        return '{"arrayValue":{"values":[' + ",".join(_any_value(v) for v in value) + "]}}"
    return '{"stringValue":' + _string(str(value)) + "}"


@lru_cache(maxsize=8192, typed=True)  # True, 1 and 1.0 are one key otherwise
def _scalar_pair(key: str, value: str | int | float) -> str:
    # Keys and most values repeat from span to span (methods, routes, statements).
    return '{"key":' + _string(key) + ',"value":' + _any_value(value) + "}"


def _pair(key: str, value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return '{"key":' + _string(key) + ',"value":' + _any_value(value) + "}"
    return _scalar_pair(key, value)


def _attributes(attributes: Any) -> str:
    if not attributes:
        return "[]"
    return "[" + ",".join(_pair(key, value) for key, value in attributes.items()) + "]"


def encode_span(span: ReadableSpan) -> str:
    """One span in the OTLP/JSON mapping (ids as hex, 64-bit integers as strings).

    Written out by hand rather than through dicts and ``json.dumps``: at full sampling this
    runs for every span, and building the text directly costs a third as much.
    """
    context = span.context
    assert context is not None
    parts = [
        f'{{"traceId":"{context.trace_id:032x}","spanId":"{context.span_id:016x}"',
        f',"parentSpanId":"{span.parent.span_id:016x}"' if span.parent is not None else "",
        ',"name":',
        _string(span.name),
        # OTLP numbers span kinds from 1 (INTERNAL); the Python enum from 0.
        f',"kind":{span.kind.value + 1}',
        f',"startTimeUnixNano":"{span.start_time or 0}","endTimeUnixNano":"{span.end_time or 0}"',
        ',"attributes":',
        _attributes(span.attributes),
        f',"status":{{"code":{span.status.status_code.value}',
        ',"message":' + _string(span.status.description) if span.status.description else "",
        "}",
    ]
    if span.events:
        parts.append(',"events":[')
        parts.append(
            ",".join(
                f'{{"timeUnixNano":"{event.timestamp}","name":{_string(event.name)}'
                f',"attributes":{_attributes(event.attributes)}}}'
                for event in span.events
            )
        )
        parts.append("]")
    parts.append("}")
    return "".join(parts)


def encode_spans(spans: Sequence[ReadableSpan]) -> str:
    """A ``TracesData`` JSON object: spans grouped by resource, then by instrumentation scope."""
    by_resource: dict[int, tuple[Any, dict[tuple[str, str], list[str]]]] = {}
    for span in spans:
        _, scopes = by_resource.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope
        scope_key = (scope.name, scope.version or "") if scope else ("", "")
        scopes.setdefault(scope_key, []).append(encode_span(span))
    resources = []
    for resource, scopes in by_resource.values():
        scope_spans = ",".join(
            f'{{"scope":{{"name":{_string(name)},"version":{_string(version)}}}'
            f',"spans":[{",".join(encoded)}]}}'
            for (name, version), encoded in scopes.items()
        )
        resources.append(
            f'{{"resource":{{"attributes":{_attributes(resource.attributes)}}}'
            f',"scopeSpans":[{scope_spans}]}}'
        )
    return '{"resourceSpans":[' + ",".join(resources) + "]}"


class TraceFileExporter(SpanExporter):
    """A ``SpanExporter`` appending batches to ``path`` (use under a ``BatchSpanProcessor``)."""

    def __init__(self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = encode_spans(spans) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._rotate_if_full()
                descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(descriptor, line.encode())
                finally:
                    os.close(descriptor)
        except OSError as exc:
            log.warning("trace file %s not written: %s", self.path, exc.strerror or exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _rotate_if_full(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size >= self._max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# --- reading the file back (``dynoscope traces``) ---------------------------------------


@dataclass
class SpanRecord:
    """One span read back from the file."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    service: str
    children: list[SpanRecord] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


def _plain(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_plain(item) for item in value["arrayValue"].get("values", [])]
    return None


def _plain_attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: _plain(item.get("value", {})) for item in items or []}


def decode_line(line: str) -> Iterator[SpanRecord]:
    """The spans in one line of the file."""
    data = json.loads(line)
    for resource_spans in data.get("resourceSpans", []):
        resource = _plain_attributes(resource_spans.get("resource", {}).get("attributes"))
        service = str(resource.get("service.name", ""))
        instance = resource.get("service.instance.id")
        if instance:
            service = f"{service}@{instance}"
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                yield SpanRecord(
                    trace_id=span["traceId"],
                    span_id=span["spanId"],
                    parent_id=span.get("parentSpanId", ""),
                    name=span.get("name", ""),
                    kind=int(span.get("kind", 0)),
                    start_ns=int(span.get("startTimeUnixNano", 0)),
                    end_ns=int(span.get("endTimeUnixNano", 0)),
                    attributes=_plain_attributes(span.get("attributes")),
                    status_code=int(span.get("status", {}).get("code", 0)),
                    service=service,
                )


def read_spans(path: str | Path) -> list[SpanRecord]:
    """Every readable span in ``path`` and its rotated predecessor, oldest first.

    A line cut short by a crash or a concurrent rotation is skipped, not fatal.
    """
    path = Path(path)
    spans: list[SpanRecord] = []
    for candidate in (path.with_name(path.name + ".1"), path):
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                spans.extend(decode_line(line))
            except (ValueError, KeyError, TypeError):
                log.debug("skipping an unreadable line in %s", candidate)
    return spans
