"""The local trace file: OTLP/JSON lines, bounded by rotation, one writer per file, read back
tolerantly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from exporters.tracefile import TraceFileExporter, read_spans, trace_files


def _provider(path: Path, max_bytes: int = 1 << 20) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "api", "service.instance.id": "i-1"})
    )
    provider.add_span_processor(SimpleSpanProcessor(TraceFileExporter(path, max_bytes=max_bytes)))
    return provider


def test_lines_follow_the_otlp_json_mapping(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "traces.jsonl"
    tracer = _provider(path).get_tracer("test")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER) as parent:
        parent.set_attributes({"n": 3, "ok": True, "ratio": 0.5, "tags": ["a", "b"], "s": 'q"uote'})
        child = tracer.start_span("SELECT homes", kind=SpanKind.CLIENT)
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "timeout"))
        child.end()
    first = json.loads(path.read_text().splitlines()[0])
    span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["name"] == "SELECT homes"
    assert span["kind"] == 3  # SPAN_KIND_CLIENT
    assert span["status"] == {"code": 2, "message": "timeout"}
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert span["events"][0]["attributes"] == [{"key": "attempt", "value": {"intValue": "2"}}]
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 0

    spans = read_spans(path)
    server = next(s for s in spans if s.kind == 2)
    client = next(s for s in spans if s.kind == 3)
    assert client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert server.attributes == {
        "n": 3,
        "ok": True,
        "ratio": 0.5,
        "tags": ["a", "b"],
        "s": 'q"uote',
    }
    assert server.service == "api@i-1"


def test_file_is_rotated_once_and_both_halves_are_read(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    tracer = _provider(path, max_bytes=2_000).get_tracer("test")
    for n in range(40):
        tracer.start_span(f"span-{n}").end()
    rotated = path.with_name("traces.jsonl.1")
    assert rotated.exists()
    assert path.stat().st_size < 2_000 + 1_000
    names = [s.name for s in read_spans(path)]
    assert names == sorted(names, key=lambda name: int(name.split("-")[1]))
    assert names[-1] == "span-39"


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    _provider(path).get_tracer("test").start_span("whole").end()
    with path.open("a") as handle:
        handle.write('{"resourceSpans":[{"resource"')
    assert [s.name for s in read_spans(path)] == ["whole"]


def test_booleans_and_numbers_keep_their_types() -> None:
    from exporters.tracefile import _scalar_pair

    encoded = [_scalar_pair("k", value) for value in (1, True, 1.0)]
    assert '"intValue"' in encoded[0]
    assert '"boolValue"' in encoded[1]
    assert '"doubleValue"' in encoded[2]


def _write(exporter: TraceFileExporter, names: list[str]) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for name in names:
        tracer.start_span(name).end()


def test_each_writer_has_a_file_of_its_own_and_rotates_only_that(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    first = TraceFileExporter(path, max_bytes=2_000)
    second = TraceFileExporter(path, max_bytes=2_000)
    for n in range(30):  # interleaved, as two busy workers would write
        _write(first, [f"a-{n}"])
        _write(second, [f"b-{n}"])
    assert (first.file, second.file) == (path, tmp_path / "traces-1.jsonl")
    assert [f.name for f in trace_files(path)] == [
        "traces.jsonl.1",
        "traces.jsonl",
        "traces-1.jsonl.1",
        "traces-1.jsonl",
    ]
    for file in trace_files(path):
        prefixes = {span.name[0] for line in file.read_text().splitlines() for span in _names(line)}
        assert len(prefixes) == 1, file  # never two writers in one file
    names = {span.name for span in read_spans(path)}
    assert {"a-29", "b-29"} <= names
    first.shutdown()
    second.shutdown()


def _names(line: str) -> list[object]:
    from exporters.tracefile import decode_line

    return list(decode_line(line))


HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_file_held_by_another_process_is_left_to_it_and_taken_over_after(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traces.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / ".traces.jsonl.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        exporter = TraceFileExporter(path)
        _write(exporter, ["while-held"])
        assert exporter.file == tmp_path / "traces-1.jsonl" and not path.exists()
    finally:
        holder.communicate("", timeout=10)  # the holder exits, and its lock with it
    exporter.shutdown()
    successor = TraceFileExporter(path)
    _write(successor, ["after"])
    assert successor.file == path
    assert [s.name for s in read_spans(path)] == ["after", "while-held"]
    successor.shutdown()
    again = TraceFileExporter(path)  # a file given up at shutdown is taken again
    _write(again, ["again"])
    assert again.file == path
    again.shutdown()
