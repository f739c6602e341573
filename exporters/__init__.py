"""Where telemetry leaves a process: ``/metrics`` exposition, OTLP export, the trace file."""

from exporters.metrics import Exposition, MetricsEndpoint, expose, render, scrape_registry
from exporters.otlp import otlp_exporter, span_processor
from exporters.server import MetricsServer
from exporters.tracefile import TraceFileExporter, read_spans, trace_files

__all__ = [
    "Exposition",
    "MetricsEndpoint",
    "MetricsServer",
    "TraceFileExporter",
    "expose",
    "otlp_exporter",
    "read_spans",
    "render",
    "scrape_registry",
    "span_processor",
    "trace_files",
]
