"""Alert-engine benchmark: one evaluation cycle of 1,000 rules against a real Prometheus.

Run with ``make bench BENCH=alerts`` (or ``python -m bench alerts``). It starts Prometheus
(Debian's ``prometheus``) on a loopback port, scraping five in-process exporters that stand in
for API instances (20 routes, 3 statuses, 4 tables, 2 caches each, with traffic added every
scrape), waits for 20 s of data, then times one evaluation cycle of one group of 1,000 rules:
``Evaluator.run`` of an engine wired by ``Monitor.build`` (state in memory, its store a SQLite
file, no context lookup for firing alerts), followed by the write of the cycle's changes to
the store (``StoreWriter.flush``, which the running engine does behind, once a second):

1. shared: 1,000 signal rules over 40 questions (10 signals x 2 groupings x 2 windows, 25
   thresholds each; 38 distinct, since ``instance_up`` has no window): each distinct
   question is sent once per cycle;
2. unshared: the same 1,000 rules written as raw PromQL with the threshold inside, so every
   rule is its own query (950 distinct; what evaluating them in Prometheus-style
   one-query-per-rule costs).

Printed per mode: cycle wall time (median, p95 over the cycles), CPU per cycle of this process
(the engine: queries, state machine, writing to its store) and of Prometheus, HTTP requests per
cycle, and how many alerts the cycle left pending or firing.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from prometheus_client import CollectorRegistry, start_http_server

from alerts.engine.monitor import Monitor, open_store
from alerts.rules.rule import Group, Op, RawQuery, Rule, SignalQuery
from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named
from alerts.settings import AlertSettings
from alerts.store.lease import HostLease
from deploy.native.prometheus import running_prometheus
from deploy.native.topology import free_port
from instrumentation.catalogue import Catalogue

RULES = 1_000
CYCLES = 10
INSTANCES = 5
WARM_UP_SECONDS = 20
SIGNALS = [
    ("http_latency_p95_seconds", Op.GT, (0.001, 0.5)),
    ("http_latency_p99_seconds", Op.GT, (0.001, 1.0)),
    ("http_error_ratio", Op.GT, (0.0, 0.2)),
    ("http_requests_per_second", Op.GT, (0.0, 50.0)),
    ("db_slow_queries_per_minute", Op.GT, (0.0, 5.0)),
    ("db_queries_per_second", Op.GT, (0.0, 100.0)),
    ("db_queries_per_request", Op.GT, (0.0, 5.0)),
    ("cache_hit_ratio", Op.LT, (0.5, 1.0)),
    ("memory_growth_bytes_per_hour", Op.GT, (0.0, 1e9)),
    ("instance_up", Op.LT, (0.5, 1.5)),
]


def build_rules() -> tuple[list[Rule], list[Rule]]:
    """The same 1,000 rules as signal rules (shared queries) and as raw PromQL (unshared)."""
    shared: list[Rule] = []
    unshared: list[Rule] = []
    per_query = RULES // (len(SIGNALS) * 4)
    for name, op, (low, high) in SIGNALS:
        signal = signal_named(name)
        for by in ((), ("instance",)):
            for window in (timedelta(seconds=10), timedelta(seconds=15)):
                args = SignalArgs(by=by, window=window, params=signal.params())
                query = SignalQuery(name, args)
                for i in range(per_query):
                    threshold = low + (high - low) * i / per_query
                    rule_name = f"R{len(shared):04d}"
                    shared.append(
                        Rule(name=rule_name, group="bench", query=query, op=op, threshold=threshold)
                    )
                    raw = RawQuery(f"({query.promql}) {op.value} {threshold!r}")
                    unshared.append(Rule(name=rule_name, group="bench", query=raw))
    return shared, unshared


@contextmanager
def exporters() -> Iterator[list[str]]:
    """Five registries with catalogue metrics on their own ports, plus a traffic thread."""
    catalogues, targets, servers = [], [], []
    for _ in range(INSTANCES):
        registry = CollectorRegistry()
        catalogues.append(Catalogue(registry))
        port = free_port()
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        servers.append((server, thread))
        targets.append(f"127.0.0.1:{port}")
    stop = False

    def traffic() -> None:
        rng = random.Random(1)
        while not stop:
            for metrics in catalogues:
                for _ in range(200):
                    route = f"/r{rng.randrange(20)}"
                    status = rng.choice(("200", "200", "200", "404", "500"))
                    metrics.http_request_duration.labels(
                        method="GET", route=route, status_code=status
                    ).observe(rng.expovariate(20))
                    table = f"t{rng.randrange(4)}"
                    metrics.db_operation_duration.labels(operation="SELECT", table=table).observe(
                        rng.expovariate(100)
                    )
                    cache = f"c{rng.randrange(2)}"
                    result = "hit" if rng.random() < 0.7 else "miss"
                    metrics.cache_requests.labels(cache=cache, result=result).inc()
                if rng.random() < 0.2:
                    metrics.db_slow_queries.labels(operation="SELECT", table="t0").inc()
            time.sleep(0.25)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        yield targets
    finally:
        stop = True
        worker.join()
        for server, thread in servers:
            server.shutdown()
            thread.join()


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(
    label: str, rules: list[Rule], *, url: str, database: Path, prometheus: psutil.Process
) -> None:
    settings = AlertSettings.from_env(
        {
            "PROMETHEUS_URL": url,
            "ALERT_STORE_URL": f"sqlite:///{database}",
            # Context lookups (exemplars) would add requests to the shared mode only.
            "ALERT_CONTEXT_TIMEOUT": "0",
        }
    )
    store = open_store(settings)
    requests = 0

    async def count(_: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    group = Group("bench", interval=timedelta(seconds=15), rules=tuple(rules))
    walls, cpus, server_cpus, counts = [], [], [], []
    async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        # The engine the product runs (one process, one store), without its scheduler: the
        # cycles are run here, one after the other.
        monitor = Monitor.build(
            settings,
            store=store,
            metrics=Catalogue(CollectorRegistry()),
            http=client,
            lease=HostLease(),
        )
        monitor.evaluator.prepare(rules)
        if not await monitor.writer.connect(now=datetime.now(UTC)):
            raise RuntimeError(f"alert store {database} could not be migrated and loaded")
        for _ in range(CYCLES):
            requests = 0
            wall, cpu = time.perf_counter(), time.process_time()
            server_cpu = cpu_seconds(prometheus)
            now = datetime.now(UTC)
            cycle = await monitor.evaluator.run(group, now=now)
            if not await monitor.writer.flush(now=now):
                raise RuntimeError(f"alert store {database}: writing the cycle failed")
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            server_cpus.append(cpu_seconds(prometheus) - server_cpu)
            counts.append(requests)
            assert not cycle.failed, cycle.failed[:3]
        await monitor.stop()
    await store.dispose()
    alerts = sum(len(e.alerts) for e in cycle.evaluations.values())
    walls.sort()
    p95 = walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))]
    print(
        f"{label:9} {len(rules)} rules, {cycle.queries:4} distinct queries, "
        f"{statistics.median(counts):5.0f} HTTP requests/cycle: "
        f"cycle median {statistics.median(walls) * 1000:7.1f} ms, p95 {p95 * 1000:7.1f} ms, "
        f"CPU engine {statistics.median(cpus) * 1000:6.0f} ms + Prometheus "
        f"{statistics.median(server_cpus) * 1000:5.0f} ms per cycle, {alerts} active alerts"
    )


async def run() -> None:
    shared, unshared = build_rules()
    with exporters() as targets, running_prometheus({"api": targets}) as prometheus:
        print(
            f"Prometheus scraping {len(targets)} exporters each second; warm-up {WARM_UP_SECONDS} s"
        )
        await asyncio.sleep(WARM_UP_SECONDS)
        server = psutil.Process(prometheus.pid)
        with tempfile.TemporaryDirectory() as directory:
            for label, rules in (("shared", shared), ("unshared", unshared)):
                database = Path(directory) / f"{label}.db"
                await measure(
                    label, rules, url=prometheus.url, database=database, prometheus=server
                )


def main() -> None:
    asyncio.run(run())
