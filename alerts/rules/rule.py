"""Alert rules: the file format (pydantic, strict) and the compiled values the engine runs.

A rule file holds groups; each rule either names a signal (``signal``, ``by``, ``window``,
``op``, ``threshold``, optional ``params``) or gives raw PromQL (``expr``, Prometheus source
only)::

    groups:
      - name: scaling-health
        interval: 15s
        rules:
          - alert: ApiLatencyP95High
            signal: http_latency_p95_seconds
            by: [route]
            window: 5m
            op: ">"
            threshold: 0.5
            for: 5m
            keep_firing_for: 2m
            repeat_interval: 4h    # re-announce while firing (default 4h)
            no_data: ok            # ok | alerting | keep
            labels: {severity: page}
            annotations: {summary: "p95 {{ value | fixed(2) }}s on {{ labels.route }}"}

``no_data`` is what an empty answer means: ``ok`` (the condition is false, alerts resolve),
``alerting`` (one alert without series labels fires after ``for``) or ``keep`` (nothing
changes, as with a failed query but without counting a failure).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from alerts.engine.query import Labels
from alerts.rules.duration import format_duration, parse_duration
from alerts.rules.signal import Record, SignalArgs, number
from alerts.rules.signals import signal_named


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 5m, 1h30m")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


class NoData(StrEnum):
    OK = "ok"
    ALERTING = "alerting"
    KEEP = "keep"


class Op(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "=="
    NE = "!="


_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


class RuleSpec(BaseModel):
    """One rule as written in a file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str = Field(pattern=NAME_PATTERN)
    signal: str | None = None
    expr: str | None = None
    by: tuple[str, ...] = ()
    window: Duration | None = None
    op: Op | None = None
    threshold: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    for_: Duration = Field(default=timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    no_data: NoData = NoData.OK
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class GroupSpec(BaseModel):
    """A group of rules evaluated together at one interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    interval: Duration = timedelta(seconds=15)
    rules: list[dict[str, Any]] = Field(min_length=1)


class OverrideSpec(BaseModel):
    """Changes to one shipped rule, kept in a file of their own (see ``alerts.rules.loader``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    threshold: float | None = None
    window: Duration | None = None
    for_: Duration | None = Field(default=None, alias="for")
    keep_firing_for: Duration | None = None
    repeat_interval: Duration | None = None
    no_data: NoData | None = None
    params: dict[str, Any] | None = None
    labels: dict[str, str] | None = None


class FileSpec(BaseModel):
    """A rule file: rule groups, overrides of rules defined elsewhere, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[dict[str, Any]] = Field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)


@dataclass(frozen=True)
class SignalQuery:
    """Ask for a signal's value per label set; rules differing only in threshold share it."""

    signal: str
    args: SignalArgs

    @property
    def promql(self) -> str:
        return signal_named(self.signal).promql(self.args)

    @property
    def self_monitoring(self) -> bool:
        return signal_named(self.signal).self_monitoring

    @property
    def published(self) -> tuple[Record, ...]:
        """The named series the signal publishes for this use of it."""
        records = signal_named(self.signal).records
        return records(self.args) if records is not None else ()


@dataclass(frozen=True)
class RawQuery:
    """Raw PromQL: the returned series are the alerting ones."""

    expr: str

    @property
    def promql(self) -> str:
        return self.expr

    @property
    def self_monitoring(self) -> bool:
        return False


Query = SignalQuery | RawQuery


@dataclass(frozen=True)
class Rule:
    """A compiled, validated rule."""

    name: str
    group: str
    query: Query
    op: Op | None = None
    threshold: float | None = None
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL
    no_data: NoData = NoData.OK
    labels: Labels = ()
    annotations: tuple[tuple[str, str], ...] = ()
    file: str = "<memory>"

    def holds(self, value: float) -> bool:
        """Whether the condition is true for ``value`` (raw PromQL filters on its own)."""
        if self.op is None or self.threshold is None:
            return True
        return _COMPARE[self.op](value, self.threshold)

    @property
    def condition(self) -> str:
        """The comparison as PromQL, e.g. ``> 0.5`` ("" for raw PromQL)."""
        if self.op is None or self.threshold is None:
            return ""
        return f"{self.op.value} {number(self.threshold)}"

    def describe(self) -> str:
        if isinstance(self.query, RawQuery):
            return self.query.expr
        args = self.query.args
        by = f" by {', '.join(args.by)}" if args.by else ""
        return f"{self.query.signal}{by} over {format_duration(args.window)} {self.condition}"


@dataclass(frozen=True)
class Group:
    name: str
    interval: timedelta
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class RuleSet:
    """Every group loaded from the configured files."""

    groups: tuple[Group, ...]
    files: tuple[str, ...] = ()

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for group in self.groups for rule in group.rules)

    def rule(self, name: str) -> Rule:
        return next(rule for rule in self.rules if rule.name == name)
