"""Log correlation: every log record carries ``trace_id`` and ``span_id``.

A record factory (not a filter) adds the attributes, so any handler and formatter can use
``%(trace_id)s`` and they are empty strings outside a request. Handlers of the root logger
that use the plain ``logging.Formatter`` also get `` trace_id=… span_id=…`` appended to
lines written inside a request; structured (e.g. JSON) formatters are left alone and can
read the attributes.
"""

from __future__ import annotations

import logging
from typing import Any

from instrumentation.tracing import current_ids

_installed = False


def _ids() -> tuple[str, str]:
    ids = current_ids.get()
    if ids is None:
        return "", ""
    return format(ids[0], "032x"), format(ids[1], "016x")


class TraceContextFormatter(logging.Formatter):
    """Wraps a formatter and appends the trace and span ids when there are any."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            text = f"{text} trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
        return text


def install_log_correlation(logger: logging.Logger | None = None) -> None:
    """Add ``trace_id``/``span_id`` to every record; append them to plain root handlers.

    Idempotent: calling it again (another app in the same process) changes nothing.
    """
    global _installed
    if not _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.trace_id, record.span_id = _ids()
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
    for handler in (logger or logging.getLogger()).handlers:
        formatter = handler.formatter
        if formatter is None or type(formatter) is logging.Formatter:
            handler.setFormatter(TraceContextFormatter(formatter or logging.Formatter()))
