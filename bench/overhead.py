"""Instrumentation overhead: throughput and p99 of one cached endpoint, side by side.

Six uvicorn servers (one worker each) run the same app on loopback, differing only in their
instrumentation. wrk loads one at a time, in alternating rounds, so drift on a shared machine
hits every variant alike: each variant's run sits next to a run of the uninstrumented
server, and its ratio is the median over rounds of its throughput over that neighbour's.
req/s and p99 are medians. A second uninstrumented server ("control") shows the noise floor.
Each variant's server CPU time per request (``/proc`` CPU time over requests answered, median
over rounds) is printed too: unlike wrk throughput, which strays ±20 % between two identical
servers on a shared machine, it barely moves.
On a machine with at least two CPUs the servers share one and wrk gets another, so the load
generator does not compete with the server it measures.

    python -m bench overhead            # ~4 minutes
    BENCH_ROUNDS=6 BENCH_SECONDS=6 python -m bench overhead
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
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

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "/properties/1"
VARIANT_ENV = "BENCH_OVERHEAD_VARIANT"
SERVER_CPU, WRK_CPU = 1, 0


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    environ: dict[str, str]
    target: float | None = None


OFF = {"DYNOSCOPE_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
VARIANTS = [
    Variant("none", "no instrumentation", OFF),
    Variant("metrics", "metrics only", {"OTEL_SDK_DISABLED": "true"}, 0.95),
    Variant("default", "default (metrics + 10 % traces)", {}, 0.85),
    Variant("traced", "metrics + 100 % traces", {"OTEL_TRACES_SAMPLER": "always_on"}, 0.60),
    Variant("instrumentator", "prometheus-fastapi-instrumentator", {**OFF, VARIANT_ENV: "pfi"}),
    Variant("otel-contrib", "OTel contrib FastAPI (defaults)", {**OFF, VARIANT_ENV: "contrib"}),
    # A second uninstrumented server: how far its ratio strays from 1.00 is the noise floor.
    Variant("control", "no instrumentation (control)", OFF),
]


def create() -> Any:
    """uvicorn factory: the API, plus a peer library's instrumentation when asked."""
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings.from_env())
    variant = os.environ.get(VARIANT_ENV)
    if variant == "pfi":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    elif variant == "contrib":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        # SDK defaults (parent-based always-on sampler, batch processor); spans are dropped
        # at the exporter, which flatters this variant: ours write every span to a file.
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return app


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(command: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return command
    return ["taskset", "-c", str(cpu), *command]


def _cli(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dynoscope", *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@contextmanager
def _servers(workdir: Path) -> Iterator[dict[str, tuple[str, int]]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DYNOSCOPE", "OTEL", "PROM"))}
    base.update(
        {
            "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "LOG_LEVEL": "WARNING",
            "DYNOSCOPE_TRACES_FILE": str(workdir / "traces.jsonl"),
        }
    )
    base.pop("REDIS_URL", None)
    _cli(base, "db", "upgrade")
    _cli(base, "seed", "--properties", "20")
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, tuple[str, int]] = {}
    try:
        for variant in VARIANTS:
            port = _free_port()
            env = {**base, **variant.environ}
            processes.append(
                subprocess.Popen(
                    _pinned(
                        [
                            *(sys.executable, "-m", "uvicorn", "bench.overhead:create"),
                            *("--factory", "--port", str(port)),
                            *("--log-level", "warning", "--no-access-log"),
                        ],
                        SERVER_CPU,
                    ),
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls[variant.key] = (f"http://127.0.0.1:{port}", processes[-1].pid)
        deadline = time.monotonic() + 60
        for url, _ in urls.values():
            while True:
                try:
                    if httpx.get(url + ENDPOINT, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not start")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_REQUESTS = re.compile(r"(\d+) requests in")
_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server (taskset execs uvicorn in the same process)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _wrk(url: str, pid: int, *, seconds: int, connections: int) -> tuple[float, float, float]:
    """(req/s, p99 ms, server CPU µs per request) of one wrk run."""
    before = _cpu_seconds(pid)
    output = subprocess.run(
        _pinned(
            [
                *("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"),
                *("--timeout", "5s", url + ENDPOINT),
            ],
            WRK_CPU,
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _cpu_seconds(pid) - before
    rate, p99, count = _RATE.search(output), _P99.search(output), _REQUESTS.search(output)
    if rate is None or p99 is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    cpu_us = cpu / max(1, int(count.group(1))) * 1e6
    return float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], cpu_us


def main() -> None:
    if shutil.which("wrk") is None:
        print("wrk is not installed; skipping")
        return
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    seconds = int(os.environ.get("BENCH_SECONDS", "4"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "32"))
    print(
        f"GET {ENDPOINT} (cached), uvicorn 1 worker each, wrk -t1 -c{connections} "
        f"-d{seconds}s, {rounds} rounds; ratio = median of ratios to the adjacent bare run",
        flush=True,
    )
    results: dict[str, list[tuple[float, float, float]]] = {v.key: [] for v in VARIANTS}
    ratios: dict[str, list[float]] = {v.key: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="dynoscope-bench-") as tmp, _servers(Path(tmp)) as urls:
        for url, pid in urls.values():
            _wrk(url, pid, seconds=1, connections=connections)  # warm-up
        for round_number in range(rounds):
            # Each variant runs right next to an uninstrumented run (order alternating), and
            # its ratio is to that neighbour: slow drift on a shared machine cancels out.
            for variant in VARIANTS[1:]:
                pair = [VARIANTS[0], variant]
                if round_number % 2:
                    pair.reverse()
                measured = {
                    v.key: _wrk(*urls[v.key], seconds=seconds, connections=connections)
                    for v in pair
                }
                for key, figures in measured.items():
                    results[key].append(figures)
                ratios[variant.key].append(measured[variant.key][0] / measured["none"][0])
            print(f"  round {round_number + 1}/{rounds} done", flush=True)
    ratios["none"] = [1.0]
    print(
        f"\n{'variant':36} {'req/s':>8} {'ratio':>6} {'(min-max)':>11} {'p99 ms':>7}"
        f" {'CPU/req':>8}  target"
    )
    for variant in VARIANTS:
        rates = [rate for rate, _, _ in results[variant.key]]
        ratio = statistics.median(ratios[variant.key])
        p99 = statistics.median(p for _, p, _ in results[variant.key])
        cpu = statistics.median(c for _, _, c in results[variant.key])
        target = ""
        if variant.target is not None:
            verdict = "ok" if ratio >= variant.target else "MISSED"
            target = f">= {variant.target:.2f} {verdict}"
        spread = f"{min(ratios[variant.key]):.2f}-{max(ratios[variant.key]):.2f}"
        print(
            f"{variant.label:36} {statistics.median(rates):>8.0f} {ratio:>6.2f} {spread:>11}"
            f" {p99:>7.1f} {cpu:>6.0f}µs  {target}"
        )
