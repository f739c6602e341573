"""Capacity signals: how busy each instance's cores are, how many instances the load needs,
and when the fleet's trend reaches saturation.

An instance's utilisation is the CPU seconds per second of its processes
(``process_cpu_seconds_total``) over the cores its workers can use
(``dynoscope_instance_cores``: workers, capped by the CPUs and quota it has); the fleet's is
the sum of busy seconds over the sum of cores. Only instances that export their cores count,
so the alert engine's own processes are left out. ``docs/capacity.md`` says why CPU time and
not concurrency.

    >>> from alerts.rules.signal import SignalArgs
    >>> fleet = UTILIZATION.promql(SignalArgs(window=timedelta(minutes=5)))
    >>> print(fleet)  # doctest: +NORMALIZE_WHITESPACE
    sum by () (sum by (instance, job) (rate(process_cpu_seconds_total[5m]))
      and on (instance, job) sum by (instance, job) (dynoscope_instance_cores > 0))
    / sum by () (sum by (instance, job) (dynoscope_instance_cores > 0)
      and on (instance, job) sum by (instance, job) (rate(process_cpu_seconds_total[5m])))
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from alerts.engine.query import Labels
from alerts.engine.window import Window, project
from alerts.rules.duration import format_duration, parse_duration
from alerts.rules.promql import by_clause, param
from alerts.rules.signal import Record, Signal, SignalArgs, number
from instrumentation.names import HTTP_SERVER_REQUEST_DURATION, INSTANCE_CORES, PROCESS_CPU

TARGET = ("instance", "job")
ON = "on (instance, job)"
REQUESTS = f"{HTTP_SERVER_REQUEST_DURATION}_count"
UTILIZATION_RECORD = "dynoscope:capacity_utilization"
INSTANCES_NEEDED_RECORD = "dynoscope:instances_needed"


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 5m")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class CapacityTarget(BaseModel):
    """The share of its cores an instance should stay under (headroom for bursts and for
    losing an instance)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target_utilization: float = Field(default=0.7, gt=0, le=1)


class ForecastParams(BaseModel):
    """The forecast's saturation level, the rate window each utilisation point is measured
    over, and the target the published ``dynoscope:instances_needed`` sizes for."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    saturation: float = Field(default=0.8, gt=0)
    rate_window: Duration = timedelta(minutes=5)
    target_utilization: float = Field(default=0.7, gt=0, le=1)


# --- PromQL --------------------------------------------------------------------------------


def _busy(window: str) -> str:
    return f"sum by (instance, job) (rate({PROCESS_CPU}[{window}]))"


def _cores() -> str:
    return f"sum by (instance, job) ({INSTANCE_CORES} > 0)"


def _requests(window: str) -> str:
    return f"sum by (instance, job) (rate({REQUESTS}[{window}]))"


def _summed(inner: str, other: str, by: str) -> str:
    """``inner`` summed ``by``, counting only instances that also have ``other``."""
    return f"sum {by} ({inner} and {ON} {other})"


def utilization_promql(by: tuple[str, ...], window: str) -> str:
    clause = by_clause(SignalArgs(by=by))
    busy, cores = _busy(window), _cores()
    return f"{_summed(busy, cores, clause)} / {_summed(cores, busy, clause)}"


def _utilization_promql(args: SignalArgs) -> str:
    return utilization_promql(args.by, args.range)


def instances_needed_promql(window: str, target: float) -> str:
    busy, cores = _busy(window), _cores()
    demand = _summed(busy, cores, "by ()")
    per_instance = f"avg by () ({cores} and {ON} {busy})"
    return f"clamp_min(ceil({demand} / ({number(target)} * {per_instance})), 1)"


def _instances_needed_promql(args: SignalArgs) -> str:
    return instances_needed_promql(args.range, param(args, "target_utilization"))


def _saturation_promql(args: SignalArgs) -> str:
    clause = by_clause(args)
    busy, cores, requests = _busy(args.range), _cores(), _requests(args.range)
    served = _summed(requests, busy, clause)
    return f"{_summed(cores, busy, clause)} * {served} / {_summed(busy, cores, clause)}"


def trend_step(window: timedelta) -> timedelta:
    """The subquery resolution of a trend over ``window``: about 360 points, at least 1 s."""
    return timedelta(seconds=max(1, round(window.total_seconds() / 360)))


def _hours_promql(args: SignalArgs) -> str:
    params: ForecastParams = args.params  # type: ignore[assignment]
    utilization = utilization_promql((), format_duration(params.rate_window))
    trend = f"({utilization})[{args.range}:{format_duration(trend_step(args.window))}]"
    level = number(params.saturation)
    fitted = f"predict_linear({trend}, 0)"
    rising = f"(deriv({trend}) > 0)"
    # Already at the level on the fitted line: no time left, rising or not.
    return f"clamp_min(({level} - {fitted}) / {rising}, 0) / 3600 or ({fitted} >= {level}) * 0"


def _forecast_records(args: SignalArgs) -> tuple[Record, ...]:
    """The series autoscalers and dashboards read, sized by the forecast rule's params:
    utilisation per instance (``scope="instance"``) and of the fleet (``scope="fleet"``, no
    instance label), and the instances needed."""
    params: ForecastParams = args.params  # type: ignore[assignment]
    window = format_duration(params.rate_window)
    needed = instances_needed_promql(window, params.target_utilization)
    return (
        Record(UTILIZATION_RECORD, utilization_promql(TARGET, window), (("scope", "instance"),)),
        Record(UTILIZATION_RECORD, utilization_promql((), window), (("scope", "fleet"),)),
        Record(INSTANCES_NEEDED_RECORD, needed),
    )


# --- in-process ----------------------------------------------------------------------------


def _per_target(window: Window) -> tuple[dict[Labels, float], dict[Labels, float]]:
    """Busy CPU seconds per second and usable cores, per instance that has both."""
    busy = window.rates(PROCESS_CPU, by=TARGET)
    cores: dict[Labels, float] = {}
    for labels, value in window.latest(INSTANCE_CORES).items():
        if value > 0:
            key = project(labels, TARGET)
            cores[key] = cores.get(key, 0.0) + value
    both = busy.keys() & cores.keys()
    return {k: busy[k] for k in both}, {k: cores[k] for k in both}


def _grouped(values: Mapping[Labels, float], by: tuple[str, ...]) -> dict[Labels, float]:
    sums: dict[Labels, float] = {}
    for labels, value in values.items():
        key = project(labels, by)
        sums[key] = sums.get(key, 0.0) + value
    return sums


def _utilization(window: Window, args: SignalArgs) -> dict[Labels, float]:
    busy, cores = _per_target(window)
    busy_by, cores_by = _grouped(busy, args.by), _grouped(cores, args.by)
    return {key: busy_by[key] / total for key, total in cores_by.items() if total > 0}


def _instances_needed(window: Window, args: SignalArgs) -> dict[Labels, float]:
    busy, cores = _per_target(window)
    if not cores:
        return {}
    per_instance = sum(cores.values()) / len(cores)
    target: float = param(args, "target_utilization")
    return {(): float(max(1, math.ceil(sum(busy.values()) / (target * per_instance))))}


def _saturation(window: Window, args: SignalArgs) -> dict[Labels, float]:
    busy, cores = _per_target(window)
    requests = window.rates(REQUESTS, by=TARGET)
    busy_by, cores_by = _grouped(busy, args.by), _grouped(cores, args.by)
    served = _grouped({k: requests.get(k, 0.0) for k in busy}, args.by)
    return {
        key: cores_by[key] * served[key] / spent
        for key, spent in busy_by.items()
        if spent > 0 and served[key] > 0
    }


def fleet_trend(window: Window, rate_window: timedelta) -> list[tuple[float, float]]:
    """The fleet's utilisation at each snapshot whose rate window lies inside ``window``:
    (time, utilisation) points, as the forecast's subquery evaluates them."""
    snapshots = window.snapshots
    times = [snapshot.at for snapshot in snapshots]
    span = rate_window.total_seconds()
    points = []
    for end in range(len(snapshots)):
        start = bisect.bisect_left(times, times[end] - span)
        if times[end] - span < times[0] or end - start < 1:
            continue
        sub = Window(snapshots[start : end + 1], now=times[end])
        fleet = _utilization(sub, SignalArgs()).get(())
        if fleet is not None:
            points.append((times[end], fleet))
    return points


def least_squares(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Slope and intercept (at the first point's time) of the least-squares line, as
    PromQL's ``deriv`` and ``predict_linear`` fit it; ``None`` below two distinct times."""
    if len(points) < 2:
        return None
    origin = points[0][0]
    xs = [t - origin for t, _ in points]
    ys = [v for _, v in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    variance = sum((x - mean_x) ** 2 for x in xs)
    if variance == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / variance
    return slope, mean_y - slope * mean_x


def hours_to(level: float, points: list[tuple[float, float]], *, now: float) -> float | None:
    """Hours until the least-squares line through ``points`` reaches ``level``: 0 when the
    line is there at ``now``, ``None`` when it does not rise.

    >>> round(hours_to(0.8, [(0.0, 0.2), (3600.0, 0.3)], now=3600.0), 6)
    5.0
    >>> hours_to(0.8, [(0.0, 0.3), (3600.0, 0.3)], now=3600.0) is None
    True
    """
    fit = least_squares(points)
    if fit is None:
        return None
    slope, intercept = fit
    fitted = intercept + slope * (now - points[0][0])
    if fitted >= level:
        return 0.0
    if slope <= 0:
        return None
    return (level - fitted) / slope / 3600


def _hours(window: Window, args: SignalArgs) -> dict[Labels, float]:
    params: ForecastParams = args.params  # type: ignore[assignment]
    points = fleet_trend(window, params.rate_window)
    hours = hours_to(params.saturation, points, now=window.now)
    return {} if hours is None else {(): hours}


def _cores_of(window: Window, args: SignalArgs) -> dict[Labels, float]:
    return _grouped(_per_target(window)[1], args.by)


CORES = Signal(
    name="instance_cores",
    help="CPU cores the instances' workers can use (dynoscope_instance_cores), summed.",
    labels=frozenset(TARGET),
    promql=lambda a: f"sum {by_clause(a)} ({INSTANCE_CORES} > 0)",
    compute=_cores_of,
)

UTILIZATION = Signal(
    name="capacity_utilization",
    help="CPU seconds per second of an instance's processes over the cores its workers can "
    "use (0 to 1); without `by`, the fleet's: busy seconds summed over cores summed.",
    labels=frozenset(TARGET),
    promql=_utilization_promql,
    compute=_utilization,
)

INSTANCES_NEEDED = Signal(
    name="instances_needed",
    help="Instances the fleet's CPU demand needs to keep each under target_utilization of "
    "its cores (at least 1).",
    labels=frozenset(),
    promql=_instances_needed_promql,
    compute=_instances_needed,
    params=CapacityTarget,
)

SATURATION = Signal(
    name="capacity_saturation_requests_per_second",
    help="Requests per second at which the instance's cores would be fully busy: cores over "
    "CPU seconds per request, measured over the window.",
    labels=frozenset(TARGET),
    promql=_saturation_promql,
    compute=_saturation,
)

HOURS_TO_SATURATION = Signal(
    name="capacity_hours_to_saturation",
    help="Hours until the least-squares trend of the fleet's utilisation over the window "
    "reaches `saturation` (0 when there already); absent while it does not rise.",
    labels=frozenset(),
    promql=_hours_promql,
    compute=_hours,
    params=ForecastParams,
    records=_forecast_records,
)

CAPACITY_SIGNALS = (CORES, UTILIZATION, INSTANCES_NEEDED, SATURATION, HOURS_TO_SATURATION)
