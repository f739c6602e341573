"""Exceptions of the alert engine, one hierarchy.

    AlertsError
     ├── RuleFileError        a rule or override file is unusable; carries every Problem
     ├── QueryError           a metric source did not answer (the query, the source, why)
     ├── NotificationError    a receiver did not take a notification (receiver, retryable)
     ├── ReceiverFileError    the receivers file is unusable (file, receiver, field)
     ├── LeaseLost            a store write carried a stale fencing token (holder, token)
     ├── ExportError          a rule has no Prometheus equivalent (the rule, why)
     └── ReportError          Prometheus did not answer the scaling-health report

Callers catch ``AlertsError`` to stop on any of them; each carries the data needed to say
what went wrong and where, so the CLI prints a message instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AlertsError(Exception):
    """Base class of every alert-engine error."""


@dataclass(frozen=True)
class Problem:
    """One mistake in a rule file: where it is and what is wrong."""

    file: str
    message: str
    rule: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{': '.join(where)}: {self.message}"


class RuleFileError(AlertsError):
    """Rule files rejected as a whole; ``problems`` lists every mistake found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class QueryError(AlertsError):
    """A metric source failed to answer a query."""

    def __init__(self, message: str, *, query: str, source: str) -> None:
        self.query = query
        self.source = source
        super().__init__(f"{source}: {message}")


class NotificationError(AlertsError):
    """A receiver did not accept a notification; ``retryable`` says whether to try again."""

    def __init__(
        self,
        message: str,
        *,
        receiver: str,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        self.receiver = receiver
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(f"{receiver}: {message}")


class ReceiverFileError(AlertsError):
    """The receivers file names something wrong: where (file, receiver, field) and what."""

    def __init__(
        self, message: str, *, file: str, receiver: str | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.receiver = receiver
        self.field = field
        where = [file]
        if receiver is not None:
            where.append(f"receiver {receiver}")
        if field:
            where.append(f"field {field}")
        super().__init__(f"{': '.join(where)}: {message}")


class ExportError(AlertsError):
    """A rule cannot be written as a Prometheus rule."""

    def __init__(self, message: str, *, rule: str) -> None:
        self.rule = rule
        super().__init__(f"rule {rule}: {message}")


class LeaseLost(AlertsError):
    """Another engine has taken the lease: this one's writes are refused (fencing)."""

    def __init__(self, *, lease: str, holder: str, token: int) -> None:
        self.lease = lease
        self.holder = holder
        self.token = token
        super().__init__(f"lease {lease}: token {token} of {holder} is no longer current")


class ReportError(AlertsError):
    """Prometheus did not answer: the report would be blind, so it is not printed."""
