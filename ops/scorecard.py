"""The scaling-health scorecard: each signal against its target, and the capacity arithmetic.

Pure: it takes numbers already read (``ops/report.py`` reads them from Prometheus) and
returns lines with a verdict, so its thresholds and sums are tested without a server.

    >>> judge(0.15, P95_LATENCY)
    'PASS'
    >>> plan = capacity(rates={"api-1:8000": 40.0}, busy={"api-1:8000": 2.0})
    >>> plan.instances[0].concurrency, plan.instances_needed
    (2.0, 1)

Targets are the service's plan, also drawn on the "Scaling health" dashboard and, at their
alert level, in the shipped rules (``alerts/rules/default.yml``): a target passes, past the
target up to the alert level warns, past the alert level fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ops.capacity_model import Model

PLANNED_USERS_PER_INSTANCE = 100
"""The capacity plan's figure: concurrent requests one instance is sized for."""
BUSY_SHARE = 0.7
"""Concurrency above this share of the plan warns: time to add an instance."""

PASS, WARN, FAIL, INFO, NO_DATA = "PASS", "WARN", "FAIL", "INFO", "no data"


@dataclass(frozen=True)
class Target:
    """``good`` is the target, ``bad`` the alert level; ``higher`` when more is better."""

    good: float
    bad: float
    higher: bool = False

    def text(self, unit: str) -> str:
        sign = ">=" if self.higher else "<="
        return f"{sign} {format_value(self.good, unit)}".replace(".0 ", " ")


MIB = 1024 * 1024
P95_LATENCY = Target(good=0.2, bad=0.5)  # seconds; ApiLatencyP95AboveTarget / ...High
ERROR_RATIO = Target(good=0.01, bad=0.05)  # ApiErrorRateHigh at 5 %
CACHE_HIT_RATIO = Target(good=0.7, bad=0.6, higher=True)  # CacheHitRateLow at 60 %
QUERIES_PER_REQUEST = Target(good=1.0, bad=2.0)  # a miss costs one statement, a hit none
MEMORY_GROWTH = Target(good=10 * MIB, bad=50 * MIB)  # bytes/hour; MemoryLeakSuspected
CONCURRENCY = Target(good=BUSY_SHARE * PLANNED_USERS_PER_INSTANCE, bad=PLANNED_USERS_PER_INSTANCE)


def judge(value: float | None, target: Target | None) -> str:
    """PASS, WARN or FAIL of ``value`` against ``target``; INFO without one, "no data"."""
    if value is None or math.isnan(value):
        return NO_DATA
    if target is None:
        return INFO
    sign = -1 if target.higher else 1
    if sign * value <= sign * target.good:
        return PASS
    return WARN if sign * value <= sign * target.bad else FAIL


@dataclass(frozen=True)
class Line:
    """One row of the scorecard; ``value`` is ``None`` when there was no data."""

    check: str
    value: float | None
    unit: str
    target: str
    verdict: str
    instance: str | None = None


def line(
    check: str,
    value: float | None,
    *,
    unit: str,
    target: Target | None,
    instance: str | None = None,
) -> Line:
    if value is not None and math.isnan(value):
        value = None
    return Line(
        check=check,
        value=value,
        unit=unit,
        target=target.text(unit) if target is not None else "-",
        verdict=judge(value, target),
        instance=instance,
    )


@dataclass(frozen=True)
class InstanceLoad:
    """Little's law on one instance: concurrency = arrival rate x mean latency."""

    instance: str
    requests_per_second: float
    mean_latency_seconds: float | None
    concurrency: float
    headroom: float
    """Concurrent requests left before the planning figure (negative: over it)."""


@dataclass(frozen=True)
class Capacity:
    planned_per_instance: int
    instances: tuple[InstanceLoad, ...]
    total_concurrency: float
    instances_needed: int | None


def capacity(
    *,
    rates: Mapping[str, float],
    busy: Mapping[str, float],
    planned: int = PLANNED_USERS_PER_INSTANCE,
) -> Capacity:
    """Per instance: ``rates`` (requests/s) and ``busy`` (seconds of request time per second,
    the rate of the duration histogram's sum); the instances the load needs at ``planned``
    concurrent requests each (at least one)."""
    loads = []
    for instance, rate in sorted(rates.items()):
        mean = busy.get(instance, 0.0) / rate if rate > 0 else None
        concurrency = rate * mean if mean is not None else 0.0
        loads.append(
            InstanceLoad(
                instance=instance,
                requests_per_second=rate,
                mean_latency_seconds=mean,
                concurrency=concurrency,
                headroom=planned - concurrency,
            )
        )
    total = sum(load.concurrency for load in loads)
    needed = max(1, math.ceil(total / planned)) if loads else None
    return Capacity(
        planned_per_instance=planned,
        instances=tuple(loads),
        total_concurrency=total,
        instances_needed=needed,
    )


def capacity_lines(plan: Capacity) -> list[Line]:
    rows = [
        line("concurrency", load.concurrency, unit="", target=CONCURRENCY, instance=load.instance)
        for load in plan.instances
    ]
    if plan.instances_needed is None:
        return [line("instances needed", None, unit="", target=None)]
    now = len(plan.instances)
    verdict = PASS if plan.instances_needed <= now else FAIL
    rows.append(
        Line(
            check="instances needed",
            value=float(plan.instances_needed),
            unit="",
            target=f"<= {now} running",
            verdict=verdict,
        )
    )
    return rows


UTILISATION = Target(good=BUSY_SHARE, bad=0.8)
"""CPU utilisation: the target the instances needed are sized for, and the forecast's level."""


@dataclass(frozen=True)
class InstanceModel:
    """The capacity model of one instance (``ops/capacity_model.py``, docs/capacity.md)."""

    instance: str
    requests_per_second: float
    utilisation: float
    cores: float | None
    cpu_per_request_seconds: float | None
    saturation_rate: float | None
    """Requests per second with every core busy."""
    rate_at_target_p95: float | None
    """Requests per second at which the M/M/c p95 reaches the 200 ms target."""


@dataclass(frozen=True)
class CapacityModel:
    target_utilisation: float
    instances: tuple[InstanceModel, ...]
    instances_needed: int | None
    """From the instances_needed signal: CPU demand over the target share of the cores."""


def capacity_model(
    *,
    utilisation: Mapping[str, float],
    cores: Mapping[str, float],
    rates: Mapping[str, float],
    needed: float | None,
    target: float = BUSY_SHARE,
) -> CapacityModel:
    """Per instance: ``utilisation`` (busy CPU over usable cores), ``cores`` and ``rates``
    (requests/s); ``needed``: the fleet's instances needed, as the signal computed it.

    >>> model = capacity_model(
    ...     utilisation={"a:1": 0.5}, cores={"a:1": 1.0}, rates={"a:1": 250.0}, needed=1.0)
    >>> each = model.instances[0]
    >>> each.cpu_per_request_seconds, each.saturation_rate, round(each.rate_at_target_p95 or 0)
    (0.002, 500.0, 485)
    """
    instances = []
    for instance, busy in sorted(utilisation.items()):
        rate, usable = rates.get(instance, 0.0), cores.get(instance)
        cost = busy * usable / rate if usable and rate > 0 and busy > 0 else None
        model = Model(cores=usable, cpu_per_request=cost) if usable and cost else None
        instances.append(
            InstanceModel(
                instance=instance,
                requests_per_second=rate,
                utilisation=busy,
                cores=usable,
                cpu_per_request_seconds=cost,
                saturation_rate=model.saturation_rate if model else None,
                rate_at_target_p95=model.rate_at_p95(P95_LATENCY.good) if model else None,
            )
        )
    return CapacityModel(
        target_utilisation=target,
        instances=tuple(instances),
        instances_needed=None if needed is None or math.isnan(needed) else int(needed),
    )


def model_lines(model: CapacityModel) -> list[Line]:
    rows = [
        line("CPU utilisation", each.utilisation, unit="ratio", target=UTILISATION,
             instance=each.instance)
        for each in model.instances
    ] or [line("CPU utilisation", None, unit="ratio", target=UTILISATION)]  # fmt: skip
    rows += [
        line("saturation rate", each.saturation_rate, unit="/s", target=None,
             instance=each.instance)
        for each in model.instances
    ] or [line("saturation rate", None, unit="/s", target=None)]  # fmt: skip
    if model.instances_needed is None:
        return [*rows, line("instances needed (CPU)", None, unit="", target=None)]
    now = len(model.instances)
    verdict = PASS if model.instances_needed <= now else FAIL
    needed = Line(
        check="instances needed (CPU)",
        value=float(model.instances_needed),
        unit="",
        target=f"<= {now} running",
        verdict=verdict,
    )
    return [*rows, needed]


def format_value(value: float | None, unit: str) -> str:
    """``0.0123, "s"`` → ``12.3 ms``; ``0.82, "ratio"`` → ``82 %``; ``None`` → ``no data``."""
    if value is None:
        return NO_DATA
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    if unit == "ratio":
        return f"{value * 100:.2f} %".replace(".00 %", " %")
    if unit == "B/h":
        return f"{value / MIB:.1f} MiB/h"
    if unit == "/s":
        return f"{value:.2f}/s"
    return f"{value:g}" if value.is_integer() else f"{value:.2f}"
