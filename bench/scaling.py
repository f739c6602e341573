"""Scaling: p95 under load with 1 and with 3 API instances behind nginx, in one run.

    make bench BENCH=scaling                                       # ~4 minutes
    BENCH_STEP_SECONDS=15 BENCH_USERS=50,200 python -m bench scaling

For each instance count it starts the native stack (deploy/native: PostgreSQL, Redis,
nginx, Prometheus, Alertmanager, one scheduler, N API instances; ~40 s), warms the cache,
then runs ``ops.load`` against nginx with read-only users (70 % lists, 30 % single
properties, 0.5-1.5 s think time) for each step of users. Each step prints req/s,
p50/p95/p99, errors by status and kind, and the API instances' CPU time per answered
request (user + system, summed over every instance process and its children) and the load
generator's own CPU time per request (it shares the cores). A last table
compares 3 instances with 1 at each step.

The load generator runs in this process on the same machine as the stack: with 2 cores,
3 instances share the same 2 cores as 1 instance (plus nginx, the databases and the load
generator), so more instances can only spread work, not add capacity. The core count is
printed so the figures are read against it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.capacity import cpu_seconds
from deploy.native.postgres import MissingBinary
from deploy.native.stack import Stack, StackConfig, start
from ops.load import LoadOptions, run_load
from ops.load_stats import LoadSummary

READ_MIX = {"browse": 7.0, "view": 3.0}
INSTANCE_COUNTS = (1, 3)


@dataclass(frozen=True)
class Step:
    """One (instances, users) measurement."""

    instances: int
    users: int
    rps: float
    p50: float
    p95: float
    p99: float
    errors: dict[str, int]
    cpu_us: float
    client_cpu_us: float


def instance_cpu_seconds(stack: Stack) -> float:
    """User + system CPU seconds of every API instance process and its children."""
    return sum(cpu_seconds(stack.pids[name]) for name in stack.instances if name in stack.pids)


def _own_cpu_seconds() -> float:
    """This process's CPU seconds: the load generator's cost shares the same cores."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def load(url: str, *, users: int, seconds: float) -> LoadSummary:
    # A connection per user: no queueing for the client's pool inside the measured latency.
    options = LoadOptions(
        url=url, users=users, seconds=seconds, mix=READ_MIX, seed=11, connections=users
    )
    return asyncio.run(run_load(options))


def measure(stack: Stack, *, instances: int, users: int, seconds: float) -> Step:
    before, client_before = instance_cpu_seconds(stack), _own_cpu_seconds()
    summary = load(stack.urls["nginx"], users=users, seconds=seconds)
    cpu = instance_cpu_seconds(stack) - before
    client_cpu = _own_cpu_seconds() - client_before
    total = summary.total
    errors = {**total.errors_by_status, **total.errors_by_kind}
    return Step(
        instances=instances,
        users=users,
        rps=total.per_second,
        p50=total.p50_ms,
        p95=total.p95_ms,
        p99=total.p99_ms,
        errors={k: v for k, v in errors.items() if v},
        cpu_us=cpu / max(1, total.answered) * 1e6,
        client_cpu_us=client_cpu / max(1, total.answered) * 1e6,
    )


def run_instances(instances: int, steps: list[int], seconds: float) -> list[Step]:
    """Start a stack of ``instances`` API instances, run every step, stop it."""
    directory = Path(tempfile.mkdtemp(prefix="dynoscope-scaling-"))
    config = StackConfig(
        directory=directory,
        instances=instances,
        schedulers=1,
        api_environ={"LOG_LEVEL": "WARNING"},
        seed_properties=500,
    )
    stack = start(config)
    try:
        load(stack.urls["nginx"], users=20, seconds=5)  # warm the cache and the pools
        results = []
        for users in steps:
            results.append(measure(stack, instances=instances, users=users, seconds=seconds))
            print(f"  {instances} instance(s), {users} users done", flush=True)
        return results
    finally:
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)


def print_steps(steps: list[Step]) -> None:
    print(
        f"\n{'inst':>4} {'users':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        f" {'CPU/req':>9} {'client CPU/req':>14}  errors"
    )
    for s in steps:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(s.errors.items())) or "none"
        print(
            f"{s.instances:>4} {s.users:>6} {s.rps:>7.0f} {s.p50:>8.1f} {s.p95:>8.1f}"
            f" {s.p99:>8.1f} {s.cpu_us:>7.0f}µs {s.client_cpu_us:>12.0f}µs  {errors}"
        )


def print_ratios(one: list[Step], three: list[Step]) -> None:
    print("\n3 vs 1 instances (ratio 3/1; < 1 for p95 and CPU/req is better)")
    for a, b in zip(one, three, strict=True):
        print(
            f"  {a.users:>5} users: req/s {b.rps / a.rps:.2f}x, p95 {b.p95 / a.p95:.2f}x,"
            f" p99 {b.p99 / a.p99:.2f}x, CPU/req {b.cpu_us / a.cpu_us:.2f}x"
        )


def main() -> None:
    seconds = float(os.environ.get("BENCH_STEP_SECONDS", "30"))
    steps = [int(u) for u in os.environ.get("BENCH_USERS", "50,200,400").split(",")]
    cores = os.cpu_count() or 1
    print(
        f"{cores} CPU cores (stack, nginx and the load generator share them); {seconds:.0f} s"
        f" per step; users {steps}; read-only mix {READ_MIX}"
    )
    results: dict[int, list[Step]] = {}
    try:
        for count in INSTANCE_COUNTS:
            results[count] = run_instances(count, steps, seconds)
    except MissingBinary as exc:
        print(f"scaling needs the native stack's programs: {exc}; skipping")
        return
    print_steps([step for count in INSTANCE_COUNTS for step in results[count]])
    print_ratios(results[1], results[3])
    if cores < 4:
        print(
            f"\nwith {cores} cores, 3 instances cannot serve more than {cores} cores' worth:"
            " the ratio shows the cost or gain of spreading, not added capacity."
        )


if __name__ == "__main__":
    main()
