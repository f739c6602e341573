"""A signal: a named quantity a rule can ask for, computable by Prometheus and in-process.

``SignalArgs`` is how a rule uses one (grouping labels, window, parameters); the parameter
models say what a signal accepts. The catalogue of signals is ``alerts.rules.signals``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from alerts.engine.query import Labels, Sample
from alerts.engine.window import Window
from alerts.rules.duration import format_duration


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafficGuard(BaseModel):
    """Ratios say nothing on a handful of requests: below this rate the signal is absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_requests_per_second: float = Field(default=0.0, ge=0)


class RestartGuard(BaseModel):
    """A freshly started process always grows; ignore instances younger than this."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_uptime_seconds: float | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class SignalArgs:
    """How a rule uses a signal: grouping labels, window and the signal's parameters."""

    by: tuple[str, ...] = ()
    window: timedelta = timedelta(minutes=5)
    params: BaseModel = field(default_factory=NoParams)

    @property
    def range(self) -> str:
        return format_duration(self.window)


@dataclass(frozen=True)
class Record:
    """A named series a signal publishes in the exported rule file."""

    name: str
    expr: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Signal:
    """A named quantity, computable by Prometheus (``promql``) and in-process (``compute``)."""

    name: str
    help: str
    labels: frozenset[str]
    promql: Callable[[SignalArgs], str]
    compute: Callable[[Window, SignalArgs], dict[Labels, float]]
    params: type[BaseModel] = NoParams
    self_monitoring: bool = False
    """Computed from the engine's own registry, also when the rules run on Prometheus."""
    records: Callable[[SignalArgs], tuple[Record, ...]] | None = None
    """Named series a rule on this signal publishes in the exported rule file (name,
    PromQL), sized by the rule's parameters: what autoscalers and dashboards read."""

    def samples(self, window: Window, args: SignalArgs) -> tuple[Sample, ...]:
        computed = self.compute(window, args)
        return tuple(Sample(labels, value) for labels, value in sorted(computed.items()))


def number(value: float) -> str:
    """A float as PromQL reads it back exactly: ``52428800``, ``0.6``, ``+Inf``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def quantile_of(digits: str) -> float:
    """The quantile a ``pNN`` or ``pNNN`` name means: NN/100 or NNN/1000, strictly between 0
    and 1; anything else is a ``ValueError`` rather than a guess.

    >>> quantile_of("95"), quantile_of("999"), quantile_of("05")
    (0.95, 0.999, 0.05)
    >>> quantile_of("5")
    Traceback (most recent call last):
    ...
    ValueError: p5 is not a quantile: write pNN for NN/100 (p50, p05) or pNNN for NNN/1000 (p999)
    """
    scheme = "write pNN for NN/100 (p50, p05) or pNNN for NNN/1000 (p999)"
    if len(digits) not in (2, 3) or int(digits) == 0:
        raise ValueError(f"p{digits} is not a quantile: {scheme}")
    if len(digits) == 3 and digits.endswith("0"):
        # p500 would be p50 and p100 would be 0.1, not the maximum: one spelling per quantile.
        meaning = int(digits) / 1000
        raise ValueError(
            f"p{digits} is ambiguous: it would mean {meaning:g}, written p{digits[:2]}"
        )
    return int(digits) / 10.0 ** len(digits)
