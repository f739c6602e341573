"""Sampled spans in a local file, one OTLP/JSON ``TracesData`` object per line.

Embedded mode has no trace backend. The file uses the OTLP JSON encoding (the OpenTelemetry
Collector's file exporter writes the same), so it can be replayed into Jaeger or Tempo later.
It is bounded: past ``max_bytes`` it is rotated once to ``<name>.1``.

Each file has one writer. An exporter claims the first free slot (an ``flock`` on a hidden lock
file beside it): the first writes ``traces.jsonl``, a second worker ``traces-1.jsonl``, and so
on, so only the owner of a file ever appends to or rotates it. A restarted worker takes the
slot its predecessor freed, so the number of files stays that of the workers. ``read_spans``
reads every slot together::

    traces.jsonl  traces.jsonl.1  traces-1.jsonl  traces-1.jsonl.1  .traces.jsonl.lock ...
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
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
MAX_SLOTS = 256


def slot_path(path: Path, slot: int) -> Path:
    """The file of writer ``slot``: the configured name for the first, numbered after it.

    >>> slot_path(Path("var/traces.jsonl"), 0), slot_path(Path("var/traces.jsonl"), 2)
    (PosixPath('var/traces.jsonl'), PosixPath('var/traces-2.jsonl'))
    """
    if slot == 0:
        return path
    return path.with_name(f"{path.stem}-{slot}{path.suffix}")


def _lock_path(file: Path) -> Path:
    return file.with_name(f".{file.name}.lock")


def claim_slot(path: Path, *, limit: int = MAX_SLOTS) -> tuple[Path, int]:
    """The first file of ``path``'s family no live writer holds, and the lock descriptor.

    The lock lasts as long as the descriptor stays open (and dies with its process).
    """
    for slot in range(limit):
        file = slot_path(path, slot)
        descriptor = os.open(_lock_path(file), os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        return file, descriptor
    raise OSError(f"all {limit} trace files beside {path} have a live writer")


def trace_files(path: str | Path) -> list[Path]:
    """Every writer's file of ``path``'s family that exists, each after its rotated half."""
    path = Path(path)
    numbered = re.compile(re.escape(path.stem) + r"-(\d+)" + re.escape(path.suffix) + "$")
    slots = [0]
    if path.parent.is_dir():
        for candidate in path.parent.iterdir():
            match = numbered.match(candidate.name)
            if match:
                slots.append(int(match.group(1)))
    files = []
    for slot in sorted(set(slots)):
        current = slot_path(path, slot)
        for file in (current.with_name(current.name + ".1"), current):
            if file.exists():
                files.append(file)
    return files


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
    """A ``SpanExporter`` appending batches to its own file of ``path``'s family.

    Use under a ``BatchSpanProcessor``. The file (``self.file``) is claimed at the first
    export and released at ``shutdown``::

        exporter = TraceFileExporter("var/traces.jsonl")
        BatchSpanProcessor(exporter)   # a second worker's exporter writes var/traces-1.jsonl
    """

    def __init__(self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.file: Path | None = None
        self._claim: int | None = None
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = encode_spans(spans) + "\n"
        try:
            with self._lock:
                file = self._own_file()
                self._rotate_if_full(file)
                descriptor = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(descriptor, line.encode())
                finally:
                    os.close(descriptor)
        except OSError as exc:
            log.warning("trace file %s not written: %s", self.path, exc.strerror or exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _own_file(self) -> Path:
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file, self._claim = claim_slot(self.path)
        return self.file

    def _rotate_if_full(self, file: Path) -> None:
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            return
        if size >= self._max_bytes:
            os.replace(file, file.with_name(file.name + ".1"))

    def shutdown(self) -> None:
        """Give the file up: the next exporter to start may take it over."""
        with self._lock:
            if self._claim is not None:
                os.close(self._claim)
            self._claim = None
            self.file = None

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
    """Every readable span in the files of ``path``'s family (all writers, rotated halves too).

    A line cut short by a crash or a concurrent rotation is skipped, not fatal.
    """
    spans: list[SpanRecord] = []
    for candidate in trace_files(path):
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
