"""Capacity: how many users one worker core holds, and how it degrades past that.

Production mode (PostgreSQL + Redis on loopback, a database and key prefix of its own, 2,000
listings), ``dynoscope serve`` pinned to CPU 1, wrk pinned to CPU 0. Each wrk connection is
one user who waits ~1 s (0.5 to 1.5 s) between requests: 70 % lists filtered by one of 8
cities and a minimum price, 30 % single properties. For each step of users it prints
throughput, wrk latency percentiles (all answers), the server's own p95 of the requests it
served (shed ones excluded), timeouts, 503s, other errors, cache errors and the server's CPU
time per request (``/proc`` CPU time delta over answers). The same run measures CPU per
request of a bare FastAPI endpoint returning the same bytes as a cached ``GET /properties/1``
and of that hit with instrumentation off and with the default instrumentation, then repeats
the steps with 2 workers (on both CPUs, sharing CPU 0 with wrk), and writes a chart of p95
and throughput against users.

    make bench BENCH=capacity                                     # ~8 minutes
    BENCH_STEP_SECONDS=8 BENCH_USERS=100,1000,3000 BENCH_WORKERS=1 python -m bench capacity
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import _load as load
from bench.cache import _prepare as prepare
from bench.cache import _reachable as reachable
from bench.cache import database

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU, WRK_CPU = "1", "0"
CITIES = ["berlin", "lisbon", "madrid", "paris", "vienna", "warsaw", "prague", "dublin"]
MIN_PRICES = [100000, 250000, 500000, 1000000]
LISTINGS = 2_000


@dataclass(frozen=True)
class Step:
    users: int
    rps: float
    p50: float
    p95: float
    p99: float
    served_p95: float
    timeouts: int
    shed: int
    errors: int
    cache_errors: int
    cpu_us: float


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _pinned(command: list[str], cpus: str) -> list[str]:
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return command
    return ["taskset", "-c", cpus, *command]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its children (from /proc); 0 when the
    process is gone."""
    try:
        process = psutil.Process(pid)
        processes = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for each in processes:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@contextmanager
def server(
    command: list[str], *, env: dict[str, str], cpus: str, ready: str = "/healthz"
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    process = subprocess.Popen(
        _pinned([*command, "--port", str(port)], cpus),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {command} did not start")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def warm(url: str) -> None:
    """Every list and item the users ask for, once: the steps start on a warm cache."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for city in CITIES:
            for price in MIN_PRICES:
                client.get(f"/properties?city={city}&min_price={price}")
        for item in range(1, LISTINGS + 1):
            client.get(f"/properties/{item}")


def run_step(url: str, pid: int, *, users: int, seconds: int, workdir: Path) -> Step:
    before_metrics = load.scrape(url)
    before_cpu = cpu_seconds(pid)
    result = load.wrk_users(
        url,
        users=users,
        seconds=seconds,
        workdir=workdir,
        cities=CITIES,
        min_prices=MIN_PRICES,
        items=LISTINGS,
        cpus=WRK_CPU,
    )
    cpu = cpu_seconds(pid) - before_cpu
    after_metrics = load.scrape(url)
    answered = max(1, result.requests)
    return Step(
        users=users,
        rps=result.requests / result.seconds,
        p50=result.p50_ms,
        p95=result.p95_ms,
        p99=result.p99_ms,
        served_p95=load.served_p95_ms(before_metrics, after_metrics),
        timeouts=result.timeouts,
        shed=result.status_503,
        errors=result.other_errors,
        cache_errors=int(load.cache_errors(after_metrics) - load.cache_errors(before_metrics)),
        cpu_us=cpu / answered * 1e6,
    )


def print_steps(title: str, steps: list[Step]) -> None:
    print(f"\n{title}")
    print(
        f"{'users':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'served p95':>10}"
        f" {'timeouts':>8} {'503s':>7} {'errors':>6} {'cache err':>9} {'CPU/req':>9}"
    )
    for s in steps:
        print(
            f"{s.users:>6} {s.rps:>7.0f} {s.p50:>8.1f} {s.p95:>8.1f} {s.p99:>8.1f}"
            f" {s.served_p95:>10.1f} {s.timeouts:>8} {s.shed:>7} {s.errors:>6}"
            f" {s.cache_errors:>9} {s.cpu_us:>7.0f}µs"
        )


def cpu_per_request(url: str, pid: int, path: str, *, seconds: int) -> float:
    """Server CPU µs per request under a closed loop of 32 connections (no think time)."""
    load.wrk_plain(url + path, seconds=1, cpus=WRK_CPU)  # warm-up
    before = cpu_seconds(pid)
    requests = load.wrk_plain(url + path, seconds=seconds, cpus=WRK_CPU)
    return (cpu_seconds(pid) - before) / max(1, requests) * 1e6


def bare_app() -> Any:
    """uvicorn factory: FastAPI returning the bytes in ``BENCH_BARE_BODY`` (a file)."""
    from fastapi import FastAPI, Response

    body = Path(os.environ["BENCH_BARE_BODY"]).read_bytes()
    app = FastAPI()

    @app.get("/properties/{property_id}")
    async def get_property(property_id: int) -> Response:
        return Response(body, media_type="application/json")

    return app


OFF = {"DYNOSCOPE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}


def compare_cpu(environ: dict[str, str], workdir: Path, *, seconds: int) -> dict[str, float]:
    """CPU µs per request of ``GET /properties/1``: the bare endpoint, a cached hit with
    instrumentation off and one with the default instrumentation, measured alternately."""
    serve = [sys.executable, "-m", "dynoscope", "serve"]
    with (
        server(serve, env={**environ, **OFF}, cpus=SERVER_CPU) as (off_url, off_pid),
        server(serve, env=environ, cpus=SERVER_CPU) as (url, pid),
    ):
        body = httpx.get(url + "/properties/1").content
        assert httpx.get(off_url + "/properties/1").content == body
        (workdir / "body.json").write_bytes(body)
        bare_env = {**environ, "BENCH_BARE_BODY": str(workdir / "body.json")}
        bare_cmd = [
            *(sys.executable, "-m", "uvicorn", "bench.capacity:bare_app", "--factory"),
            *("--log-level", "warning", "--no-access-log"),
        ]
        bare_server = server(bare_cmd, env=bare_env, cpus=SERVER_CPU, ready="/properties/1")
        with bare_server as (bare_url, bare_pid):
            assert httpx.get(bare_url + "/properties/1").content == body
            targets = {
                "bare": (bare_url, bare_pid),
                "off": (off_url, off_pid),
                "default": (url, pid),
            }
            costs: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(3):
                for name, (target, target_pid) in targets.items():
                    costs[name].append(
                        cpu_per_request(target, target_pid, "/properties/1", seconds=seconds)
                    )
    return {name: sorted(values)[1] for name, values in costs.items()}


def production_environ(environ: dict[str, str], workdir: Path) -> dict[str, str]:
    """The servers' environment: production mode on ``environ``'s database and Redis,
    nothing of this shell's dynoscope or OpenTelemetry settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "OTEL"))}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY"):
        base.pop(name, None)
    return {
        **base,
        **environ,
        "DYNOSCOPE_ENV": "production",
        "JWT_SECRET": "capacity-bench-" + "x" * 32,
        "LOG_LEVEL": "WARNING",
        "DYNOSCOPE_TRACES_FILE": str(workdir / "traces.jsonl"),
    }


def serving(
    count: int, env: dict[str, str], workdir: Path
) -> tuple[list[str], dict[str, str], str]:
    """``dynoscope serve`` with ``count`` workers: its command, environment and CPUs (one
    worker on CPU 1; more on both CPUs, sharing CPU 0 with wrk)."""
    serve = [sys.executable, "-m", "dynoscope", "serve", "--workers", str(count)]
    worker_env = dict(env)
    if count > 1:
        multiproc = workdir / f"metrics-{count}"
        multiproc.mkdir(exist_ok=True)
        worker_env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    return serve, worker_env, SERVER_CPU if count == 1 else "0,1"


def main() -> None:
    if shutil.which("wrk") is None:
        print("wrk is not installed (deploy/native/ensure-bench-tools.sh); skipping")
        return
    if not (reachable(5432) and reachable(6379)):
        print("capacity needs PostgreSQL and Redis on loopback (make services); skipping")
        return
    seconds = int(os.environ.get("BENCH_STEP_SECONDS", "30"))
    steps = [int(u) for u in os.environ.get("BENCH_USERS", "100,200,500,1000,2000,3000").split(",")]
    workers = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",")]
    limit = _raise_fd_limit()
    print(f"open files limit {limit}; {seconds} s per step; users {steps}; workers {workers}")
    results: dict[int, list[Step]] = {}
    with database() as environ, tempfile.TemporaryDirectory(prefix="dynoscope-cap-") as tmp:
        import asyncio

        workdir = Path(tmp)
        asyncio.run(prepare(environ))
        env = production_environ(environ, workdir)
        cost = compare_cpu(env, workdir, seconds=min(seconds, 5))
        bare = cost["bare"]
        print(
            f"\nCPU per request, GET /properties/1 (32 connections, no think time, median of 3):"
            f" bare FastAPI {bare:.0f} µs; dynoscope cached hit, instrumentation off"
            f" {cost['off']:.0f} µs ({cost['off'] / bare:.2f}x bare), default instrumentation"
            f" {cost['default']:.0f} µs ({cost['default'] / bare:.2f}x bare)"
        )
        for count in workers:
            serve, worker_env, cpus = serving(count, env, workdir)
            with server(serve, env=worker_env, cpus=cpus) as (url, pid):
                warm(url)
                results[count] = []
                for users in steps:
                    step = run_step(url, pid, users=users, seconds=seconds, workdir=workdir)
                    results[count].append(step)
                    print(f"  {count} worker(s), {users} users done", flush=True)
            where = "CPU 1" if count == 1 else "CPUs 0-1, wrk on CPU 0"
            print_steps(f"{count} worker(s) on {where}", results[count])
    chart = Path(os.environ.get("BENCH_CHART", ROOT / "var" / "capacity.png"))
    load.chart(results, chart)
    print(f"\nchart: {chart}")


if __name__ == "__main__":
    random.seed(1)
    main()
