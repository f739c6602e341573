"""SQLAlchemy listeners: statement durations, slow queries, errors, pool usage and SQL spans.

Statements are timed around the driver call (``before/after_cursor_execute``), so the figure
is the database round trip, not ORM work. A statement slower than the threshold is counted
and reported once in a structured log line that names its fingerprint, never its parameters.
Failed statements and failed connection attempts are counted by a bounded error type. Slow
and sampled statements carry an exemplar on the duration histogram: their fingerprint, and
the trace id when the request is sampled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from instrumentation.catalogue import Catalogue
from instrumentation.statement import Statement, describe
from instrumentation.tracing import Tracing, current_ids, sampled_parent

log = logging.getLogger("dynoscope.db")

MAX_TABLES = 100
OTHER_TABLE = "other"
CONNECT = "CONNECT"
_KEY = "_dynoscope_started"
# Series that exist from the start at 0: an error counter born at 1 is invisible to rate(),
# so the first minute of an outage would not alert.
_EXPECTED_ERRORS = [
    (operation, error_type)
    for operation in (CONNECT, "SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT")
    for error_type in ("connection", "timeout")
]


def error_type(exc: BaseException, *, disconnect: bool = False) -> str:
    """A bounded name for what went wrong: ``connection``, ``timeout``, ``integrity``, ``other``.

    Drivers wrap each other's exceptions, so the class names along the cause chain decide.

    >>> error_type(ConnectionRefusedError()), error_type(TimeoutError())
    ('connection', 'timeout')
    """
    names: set[str] = set()
    messages: list[str] = []
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        names.update(cls.__name__ for cls in type(seen).__mro__)
        messages.append(str(seen).lower())
        seen = getattr(seen, "orig", None) or seen.__cause__
    if names & {"IntegrityError", "IntegrityConstraintViolationError"}:
        return "integrity"
    if names & {"TimeoutError", "QueryCanceledError", "PoolTimeout"} or any(
        "database is locked" in m or "timeout" in m for m in messages
    ):
        return "timeout"
    if (
        disconnect
        or names & {"OSError", "ConnectionError", "InterfaceError", "CannotConnectNowError"}
        or any("connection" in name.lower() for name in names)
    ):
        return "connection"
    return "other"


@dataclass
class QueryListener:
    """The listeners attached to one engine; ``remove()`` detaches them."""

    engine: Engine
    metrics: Catalogue | None
    tracing: Tracing | None
    slow_query_seconds: float
    _tables: set[str] = field(default_factory=set)
    _children: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)
    _pool_gauges: tuple[Any, Any] | None = None
    _used: int = 0

    @property
    def system(self) -> str:
        return self.engine.dialect.name

    def _table_label(self, table: str) -> str:
        # Table names come from code, not requests, but a bug creating temporary tables must
        # not become a cardinality explosion.
        if table in self._tables:
            return table
        if len(self._tables) >= MAX_TABLES:
            return OTHER_TABLE
        self._tables.add(table)
        return table

    def before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        parent = sampled_parent() if self.tracing is not None else None
        started = (time.perf_counter(), time.time_ns() if parent is not None else 0, parent)
        conn.info.setdefault(_KEY, []).append(started)

    def after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self._finish(conn, statement, error=None)

    def error(self, context: Any) -> None:
        conn = context.connection
        if conn is None:
            return  # failed while connecting: counted by ``connect``
        operation = describe(context.statement or "").operation
        kind = error_type(context.original_exception, disconnect=context.is_disconnect)
        self._count_error(operation, kind)
        if conn.info.get(_KEY):
            self._finish(conn, context.statement or "", error=context.original_exception)

    def _finish(self, conn: Any, statement: str, *, error: BaseException | None) -> None:
        stack = conn.info.get(_KEY)
        if not stack:
            return
        started, started_ns, parent = stack.pop()
        seconds = time.perf_counter() - started
        described = describe(statement)
        if parent is not None and self.tracing is not None:
            self.tracing.record(
                f"{described.operation} {described.table}".strip(),
                parent=parent,
                kind=SpanKind.CLIENT,
                start_ns=started_ns,
                end_ns=time.time_ns(),
                attributes={
                    "db.system.name": self.system,
                    "db.operation.name": described.operation,
                    "db.collection.name": described.table,
                    "db.query.text": described.normalised,
                },
                error=error,
            )
        slow = seconds >= self.slow_query_seconds
        if self.metrics is not None:
            key = (described.operation, self._table_label(described.table))
            children = self._children.get(key)
            if children is None:
                # The slow-query counter starts at 0 with its key: a series born at 1 is
                # invisible to rate() and increase(), so a first slow query would not alert.
                children = self._children[key] = (
                    self.metrics.db_operation_duration.labels(*key),
                    self.metrics.db_slow_queries.labels(*key),
                )
            if slow or parent is not None:
                # An example (fingerprint, and the trace when sampled) for the alert engine:
                # it names the slowest statements in an alert's window. Only slow or sampled
                # statements pay for it.
                children[0].observe(seconds, _example(described, parent))
            else:
                children[0].observe(seconds)
            if slow:
                children[1].inc()
        if slow:
            self._slow(described, seconds)

    def connect(self, dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            self._count_error(CONNECT, error_type(exc))
            raise

    def _count_error(self, operation: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.db_errors.labels(operation=operation, error_type=kind).inc()

    def _slow(self, described: Statement, seconds: float) -> None:
        ids = current_ids.get()
        trace_id = format(ids[0], "032x") if ids else ""
        fields = {
            "event": "slow_query",
            "fingerprint": described.fingerprint,
            "operation": described.operation,
            "table": described.table,
            "duration_seconds": round(seconds, 6),
            "threshold_seconds": self.slow_query_seconds,
            "trace_id": trace_id,
            "statement": described.normalised[:500],
        }
        message = " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items())
        log.warning("slow query %s", message, extra={"slow_query": fields})

    def _checked_out(self, *_: Any) -> None:
        self._used += 1
        self._report_pool(returning=0)

    def _checked_in(self, *_: Any) -> None:
        self._used = max(0, self._used - 1)
        # The checkin event fires before the pool takes the connection back.
        self._report_pool(returning=1)

    def _report_pool(self, *, returning: int) -> None:
        if self._pool_gauges is None:
            return
        pool = self.engine.pool
        checkedout = getattr(pool, "checkedout", None)
        checkedin = getattr(pool, "checkedin", None)
        used = checkedout() - returning if callable(checkedout) else self._used
        idle = checkedin() + returning if callable(checkedin) else 0
        used_gauge, idle_gauge = self._pool_gauges
        used_gauge.set(max(0, used))
        idle_gauge.set(max(0, idle))

    def attach(self) -> None:
        if self.metrics is not None:
            connections = self.metrics.db_connections
            self._pool_gauges = (connections.labels(state="used"), connections.labels(state="idle"))
            for operation, kind in _EXPECTED_ERRORS:
                self.metrics.db_errors.labels(operation=operation, error_type=kind)
        event.listen(self.engine, "do_connect", self.connect)
        event.listen(self.engine, "before_cursor_execute", self.before)
        event.listen(self.engine, "after_cursor_execute", self.after)
        event.listen(self.engine, "handle_error", self.error)
        event.listen(self.engine.pool, "checkout", self._checked_out)
        event.listen(self.engine.pool, "checkin", self._checked_in)
        self._report_pool(returning=0)

    def remove(self) -> None:
        """Detach from the engine and report its pool as empty (it is being disposed)."""
        event.remove(self.engine, "do_connect", self.connect)
        event.remove(self.engine, "before_cursor_execute", self.before)
        event.remove(self.engine, "after_cursor_execute", self.after)
        event.remove(self.engine, "handle_error", self.error)
        event.remove(self.engine.pool, "checkout", self._checked_out)
        event.remove(self.engine.pool, "checkin", self._checked_in)
        if self._pool_gauges is not None:
            for gauge in self._pool_gauges:
                gauge.set(0)


def _example(described: Statement, parent: Any) -> dict[str, str]:
    example = {"fingerprint": described.fingerprint}
    if parent is not None:
        example["trace_id"] = format(parent.trace_id, "032x")
    return example


def _logfmt(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def instrument_engine(
    engine: AsyncEngine | Engine,
    *,
    metrics: Catalogue | None,
    tracing: Tracing | None,
    slow_query_seconds: float,
) -> QueryListener:
    """Attach statement metrics, slow-query reports, pool gauges and SQL spans to ``engine``.

    >>> from sqlalchemy import create_engine
    >>> listener = instrument_engine(
    ...     create_engine("sqlite://"), metrics=None, tracing=None, slow_query_seconds=1.0
    ... )
    >>> listener.remove()
    """
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    listener = QueryListener(
        engine=sync_engine, metrics=metrics, tracing=tracing, slow_query_seconds=slow_query_seconds
    )
    listener.attach()
    return listener
