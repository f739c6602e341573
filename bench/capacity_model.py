"""Capacity model against load: predict where an instance saturates from light load only,
then climb a ladder of load and measure it.

The same setting as ``bench/capacity.py`` (production mode on PostgreSQL and Redis, 2,000
listings, wrk users who think 0.5 to 1.5 s between requests; one worker pinned to CPU 1, two
workers on both CPUs sharing CPU 0 with wrk). For each worker count:

1. the first steps (``BENCH_LOW_USERS``, light load) measure CPU seconds per request (the
   server's CPU time from ``/proc``, what ``process_cpu_seconds_total`` reports, over the
   requests its metrics counted: with two workers the metric moves in 5 s steps, too coarse
   for a step), the usable cores (``dynoscope_instance_cores``) and the p95 at light load;
   the model
   (``ops/capacity_model.py``: M/M/c with c = cores, service time = CPU per request, plus the
   light-load p95 as the time spent off the CPU) then predicts the request rate at which the
   p95 crosses 200 ms, and the one at which ``MAX_IN_FLIGHT`` requests are in flight
   (shedding). Two CPU costs are shown: the mean over the light steps (what the signals
   compute from a window: CPU time over requests, the idle work of the process included) and
   the marginal one (the slope of CPU time against requests over the light steps, the idle
   work as a constant apart);
2. the ladder (``BENCH_LADDER``: fractions of the predicted users) measures where the wrk
   p95 crosses 200 ms (interpolated between the two steps around it, in log p95) and the
   step from which 1 % or more of the answers are 503s (its served rate), and stops once a
   step sheds 5 %.

It prints the steps, then predicted vs measured with the error, and the server's CPU time per
request. Predictions are made before the ladder starts.

    make bench BENCH=capacity_model                               # ~4 to 7 minutes
    BENCH_STEP_SECONDS=8 BENCH_WORKERS=1 python -m bench capacity_model
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import _load as load
from bench.cache import _prepare as prepare
from bench.cache import _reachable as reachable
from bench.cache import database
from bench.capacity import (
    Step,
    _raise_fd_limit,
    cpu_seconds,
    print_steps,
    production_environ,
    run_step,
    server,
    serving,
    warm,
)
from ops.capacity_model import Model

TARGET_P95_MS = 200.0
MAX_IN_FLIGHT = 128  # the API's default (api/settings.py)
SHED_SHARE = 0.01
STOP_SHARE = 0.05
THINK_SECONDS = 1.0  # the wrk users' mean think time (0.5 to 1.5 s)


@dataclass(frozen=True)
class Light:
    """What a light step measured from the API's metrics."""

    requests: float
    cpu_seconds: float
    seconds: float
    cores: float
    p95_ms: float


@dataclass(frozen=True)
class Prediction:
    label: str
    cpu_per_request: float
    cores: float
    saturation_rate: float
    p95_rate: float
    shed_rate: float


@dataclass(frozen=True)
class Measured:
    max_served: float
    p95_rate: float | None
    p95_users: float | None
    shed_rate: float | None
    shed_users: int | None


def _metric(samples: load.Samples, name: str) -> float:
    return sum(value for metric, _, value in samples if metric == name)


def light_step(url: str, pid: int, *, users: int, seconds: int, workdir: Path) -> Light:
    before, started, cpu = load.scrape(url), time.monotonic(), cpu_seconds(pid)
    step = run_step(url, pid, users=users, seconds=seconds, workdir=workdir)
    after, elapsed = load.scrape(url), time.monotonic() - started
    counted = "http_server_request_duration_seconds_count"  # scrapes are not counted
    return Light(
        requests=_metric(after, counted) - _metric(before, counted),
        cpu_seconds=cpu_seconds(pid) - cpu,
        seconds=elapsed,
        cores=_metric(after, "dynoscope_instance_cores"),
        p95_ms=step.p95,
    )


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ``ys`` against ``xs``."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, my - slope * mx


def predict(lights: list[Light]) -> list[Prediction]:
    """Two readings of the light steps: the mean CPU per request (what the signals compute
    over a window: CPU time over requests, the process's idle work included), and the
    marginal one (CPU rate linear in the request rate, the idle work a constant apart)."""
    cores = lights[-1].cores
    base = sorted(light.p95_ms for light in lights)[len(lights) // 2] / 1000
    rates = [light.requests / light.seconds for light in lights]
    busy = [light.cpu_seconds / light.seconds for light in lights]
    mean = sum(light.cpu_seconds for light in lights) / sum(light.requests for light in lights)
    marginal, idle = _fit(rates, busy)
    predictions = []
    for label, cost, usable in (
        ("mean", mean, cores),
        ("marginal", marginal, max(cores - max(idle, 0.0), 0.05)),
    ):
        if cost <= 0:
            print(f"  {label} CPU per request: {cost * 1e3:.2f} ms, no prediction")
            continue
        model = Model(cores=usable, cpu_per_request=cost, base=max(base - cost, 0.0))
        predictions.append(
            Prediction(
                label=label,
                cpu_per_request=cost,
                cores=usable,
                saturation_rate=model.saturation_rate,
                p95_rate=model.rate_at_p95(TARGET_P95_MS / 1000),
                shed_rate=model.rate_at_concurrency(MAX_IN_FLIGHT),
            )
        )
    return predictions


def measure(steps: list[Step]) -> Measured:
    p95_rate = p95_users = None
    for before, after in itertools.pairwise(steps):
        if before.p95 <= TARGET_P95_MS < after.p95:
            share = (math.log(TARGET_P95_MS) - math.log(max(before.p95, 0.1))) / (
                math.log(after.p95) - math.log(max(before.p95, 0.1))
            )
            p95_rate = served(before) + share * (served(after) - served(before))
            p95_users = before.users + share * (after.users - before.users)
            break
    shed_rate = shed_users = None
    # Where shedding starts for good: a stall on a busy machine sheds a burst at any load.
    for index, step in enumerate(steps):
        if all(later.shed >= SHED_SHARE * later.rps * STEP_SECONDS for later in steps[index:]):
            shed_rate, shed_users = served(step), step.users
            break
    return Measured(max(served(s) for s in steps), p95_rate, p95_users, shed_rate, shed_users)


def served(step: Step) -> float:
    """Answers per second that were not 503s."""
    return step.rps - step.shed / STEP_SECONDS


def _error(predicted: float, measured: float | None) -> str:
    if measured is None or measured <= 0:
        return "n/a"
    return f"{(predicted - measured) / measured * 100:+.0f} %"


def _rate(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}/s"


def print_table(rows: list[tuple[int, Prediction, Measured, float]]) -> None:
    print("\nPredicted from the light steps only vs measured on the ladder, per worker count")
    print(
        f"{'workers':>7}  {'model':<9} {'CPU/req':>8} {'cores':>5}"
        f"  {'saturation':>10} {'max served':>10} {'error':>6}"
        f"  {'p95>200ms':>9} {'measured':>11} {'error':>6}"
        f"  {'shedding':>8} {'measured':>11} {'error':>6}  {'server CPU/req':>14}"
    )
    for workers, p, m, server_us in rows:
        print(
            f"{workers:>7}  {p.label:<9} {p.cpu_per_request * 1e3:>6.2f}ms {p.cores:>5.2f}"
            f"  {p.saturation_rate:>8.0f}/s {m.max_served:>8.0f}/s"
            f" {_error(p.saturation_rate, m.max_served):>6}"
            f"  {p.p95_rate:>7.0f}/s {_rate(m.p95_rate):>11} {_error(p.p95_rate, m.p95_rate):>6}"
            f"  {p.shed_rate:>6.0f}/s {_rate(m.shed_rate):>11}"
            f" {_error(p.shed_rate, m.shed_rate):>6}"
            f"  {server_us:>12.0f}µs"
        )


STEP_SECONDS = int(os.environ.get("BENCH_STEP_SECONDS", "12"))


def main() -> None:
    if shutil.which("wrk") is None:
        print("wrk is not installed (deploy/native/ensure-bench-tools.sh); skipping")
        return
    if not (reachable(5432) and reachable(6379)):
        print("capacity_model needs PostgreSQL and Redis on loopback (make services); skipping")
        return
    light_users = [int(u) for u in os.environ.get("BENCH_LOW_USERS", "20,40,80").split(",")]
    ladder = [
        float(f)
        for f in os.environ.get("BENCH_LADDER", "0.5,0.7,0.85,1,1.15,1.3,1.6,2,3").split(",")
    ]
    if "BENCH_USERS" in os.environ:  # explicit users for the ladder instead of fractions
        fixed: list[int] | None = [int(u) for u in os.environ["BENCH_USERS"].split(",")]
    else:
        fixed = None
    workers = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
    limit = _raise_fd_limit()
    print(
        f"open files limit {limit}; {STEP_SECONDS} s per step; light users {light_users};"
        f" ladder {fixed or [f'{f:g}x' for f in ladder]}; workers {workers}"
    )
    rows: list[tuple[int, Prediction, Measured, float]] = []
    with database() as environ, tempfile.TemporaryDirectory(prefix="dynoscope-model-") as tmp:
        workdir = Path(tmp)
        asyncio.run(prepare(environ))
        env = production_environ(environ, workdir)
        for count in workers:
            serve, worker_env, cpus = serving(count, env, workdir)
            with server(serve, env=worker_env, cpus=cpus) as (url, pid):
                warm(url)
                lights = [
                    light_step(url, pid, users=u, seconds=STEP_SECONDS, workdir=workdir)
                    for u in light_users
                ]
                predictions = predict(lights)
                first = predictions[0]  # the lowest: the ladder climbs from below it
                # Users are requests per second times a user's cycle (think plus answer).
                users_at = first.p95_rate * (THINK_SECONDS + TARGET_P95_MS / 2000)
                steps_users = fixed or sorted({max(1, round(f * users_at)) for f in ladder})
                print(
                    f"  {count} worker(s): light steps done; predicted p95 > 200 ms at"
                    f" {first.p95_rate:.0f}/s (~{users_at:.0f} users); ladder {steps_users}",
                    flush=True,
                )
                steps: list[Step] = []
                for users in steps_users:
                    steps.append(
                        run_step(url, pid, users=users, seconds=STEP_SECONDS, workdir=workdir)
                    )
                    print(f"  {count} worker(s), {users} users done", flush=True)
                    last = steps[-1]
                    if (
                        last.p95 > TARGET_P95_MS
                        and last.shed >= SHED_SHARE * last.rps * STEP_SECONDS
                    ):
                        break
            where = "CPU 1" if count == 1 else "CPUs 0-1, wrk on CPU 0"
            print_steps(f"{count} worker(s) on {where}: ladder", steps)
            measured = measure(steps)
            served = [s for s in steps if s.shed == 0] or steps
            server_us = sorted(s.cpu_us for s in served)[len(served) // 2]
            rows.extend((count, prediction, measured, server_us) for prediction in predictions)
    print_table(rows)
    print(
        "\nsaturation: predicted rate with every core busy, against the most answers (not"
        " 503) a step served; p95: wrk's, all answers, at the served rate interpolated"
        " between the steps around 200 ms; shedding: the served rate at the first step from"
        " which every step has >= 1 % 503s; CPU/req: from the light steps; server CPU/req:"
        " /proc CPU time over answers, median of the ladder's steps without shedding."
    )


if __name__ == "__main__":
    main()
