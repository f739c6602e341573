"""What a load run saw: every latency and outcome per operation, and the summary of them.

    recorder = Recorder()
    recorder.record("browse", seconds=0.012, status=200)
    recorder.failure("view", seconds=10.0, kind="timeout")
    summary = recorder.summary(seconds=2.0)
    summary.operations["browse"].p95_ms   # 12.0

Latencies are kept whole (an ``array`` of doubles, 8 bytes a request), so the percentiles
are exact: a ten-minute run at 1,000 requests/s holds under 5 MB.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("timeout", "connection", "other")
"""Failures with no HTTP answer: the request timed out, the connection failed, or else."""


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when there are none).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    (2.0, 4.0)
    """
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Operation:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0


@dataclass(frozen=True)
class OperationSummary:
    """One operation's outcome: ``requests`` sent (answered or not), by status and by kind."""

    requests: int
    answered: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors_by_status: dict[str, int]
    errors_by_kind: dict[str, int]
    skipped: int

    @property
    def errors(self) -> int:
        return sum(self.errors_by_status.values()) + sum(self.errors_by_kind.values())


@dataclass(frozen=True)
class LoadSummary:
    """A whole run: totals over every operation, then each operation (``--json`` prints
    ``as_dict()``; its keys are a contract)."""

    url: str
    seconds: float
    users: int
    total: OperationSummary
    operations: dict[str, OperationSummary]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "seconds": round(self.seconds, 3),
            "users": self.users,
            "total": _rounded(asdict(self.total)),
            "operations": {name: _rounded(asdict(op)) for name, op in self.operations.items()},
            "notes": list(self.notes),
        }


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: an operation that got no answer has no latency, so null.
    return {
        key: (None if math.isnan(v) else round(v, 3)) if isinstance(v, float) else v
        for key, v in values.items()
    }


class Recorder:
    """Collects outcomes as the users produce them (one event loop, so no locking)."""

    def __init__(self) -> None:
        self._operations: dict[str, _Operation] = {}

    def _of(self, name: str) -> _Operation:
        return self._operations.setdefault(name, _Operation())

    def record(self, name: str, *, seconds: float, status: int) -> None:
        """An HTTP answer with ``status`` after ``seconds``."""
        operation = self._of(name)
        operation.latencies.append(seconds)
        operation.statuses[status] += 1

    def failure(self, name: str, *, seconds: float, kind: str) -> None:
        """No answer: ``kind`` is one of ``KINDS``."""
        self._of(name).failures[kind] += 1

    def skip(self, name: str) -> None:
        """An operation the user model chose but could not send (writes not allowed)."""
        self._of(name).skipped += 1

    @property
    def requests(self) -> int:
        return sum(_sent(op) for op in self._operations.values())

    def errors(self) -> int:
        return sum(
            sum(n for code, n in op.statuses.items() if code >= 400) + sum(op.failures.values())
            for op in self._operations.values()
        )

    def recent_p95_ms(self, since: Mapping[str, int]) -> float:
        """p95 of the answers recorded after ``since`` (a ``marks()`` result), for progress."""
        latencies = [
            value
            for name, op in self._operations.items()
            for value in op.latencies[since.get(name, 0) :]
        ]
        return percentile(sorted(latencies), 0.95) * 1000

    def marks(self) -> dict[str, int]:
        return {name: len(op.latencies) for name, op in self._operations.items()}

    def summary(
        self, *, url: str, seconds: float, users: int, notes: Iterable[str] = ()
    ) -> LoadSummary:
        everything = _Operation()
        for op in self._operations.values():
            everything.latencies.extend(op.latencies)
            everything.statuses.update(op.statuses)
            everything.failures.update(op.failures)
            everything.skipped += op.skipped
        return LoadSummary(
            url=url,
            seconds=seconds,
            users=users,
            total=_summary(everything, seconds),
            operations={
                name: _summary(op, seconds) for name, op in sorted(self._operations.items())
            },
            notes=tuple(notes),
        )


def _sent(op: _Operation) -> int:
    return len(op.latencies) + sum(op.failures.values())


def _summary(op: _Operation, seconds: float) -> OperationSummary:
    ordered = sorted(op.latencies)
    statuses = {str(code): count for code, count in sorted(op.statuses.items())}
    return OperationSummary(
        requests=_sent(op),
        answered=len(ordered),
        per_second=_sent(op) / seconds if seconds > 0 else math.nan,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p95_ms=percentile(ordered, 0.95) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        statuses=statuses,
        errors_by_status={code: n for code, n in statuses.items() if int(code) >= 400},
        errors_by_kind={kind: op.failures[kind] for kind in KINDS if op.failures[kind]},
        skipped=op.skipped,
    )


def format_summary(summary: LoadSummary) -> str:
    """The summary as an aligned table, one line per operation and a total."""
    header = (
        f"{'operation':<10} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'p99 ms':>8} {'errors':>6}  detail"
    )
    lines = [
        f"{summary.users} users for {summary.seconds:.1f} s against {summary.url}",
        "",
        header,
    ]
    rows = [*summary.operations.items(), ("total", summary.total)]
    for name, op in rows:
        lines.append(
            f"{name:<10} {op.requests:>8} {op.per_second:>8.1f} {_ms(op.p50_ms)}"
            f" {_ms(op.p95_ms)} {_ms(op.p99_ms)} {op.errors:>6}  {_detail(op)}".rstrip()
        )
    lines.extend(f"note: {note}" for note in summary.notes)
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{'-':>8}" if math.isnan(value) else f"{value:>8.1f}"


def _detail(op: OperationSummary) -> str:
    parts = [f"{code}={n}" for code, n in op.errors_by_status.items()]
    parts += [f"{kind}={n}" for kind, n in op.errors_by_kind.items()]
    if op.skipped:
        parts.append(f"skipped={op.skipped}")
    return " ".join(parts)
