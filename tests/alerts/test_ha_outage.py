"""High availability never goes blind: ``dynoscope alerts run`` engines keep paging while
their shared alert store is down, and come back clean.

Real processes throughout: two or three engines on a store in a private PostgreSQL cluster
that is stopped hard (``pg_ctl stop -m immediate``), a real Prometheus scraping a target
process that is killed and started again while the store is down, and a webhook counting
what it is sent. Then a partition: one engine's way to the store is cut at a TCP proxy while
the leader still reaches it. ``pytest -s -k ha_outage`` prints the times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.engine.monitor import open_store
from alerts.engine.peers import PEER_PATH
from alerts.engine.state import AlertState
from alerts.http.app import embedded_engine
from alerts.settings import AlertSettings
from alerts.store.migrate import upgrade
from alerts.store.store import Store
from tests.alerts.harness import eventually, rules_file
from tests.alerts.processes import CountingReceiver, counting_receiver, engines, logs
from tests.support.postgres_cluster import Cluster
from tests.support.prometheus import running_prometheus
from tests.support.stack import free_port
from tests.support.tcp_proxy import tcp_proxy

pytestmark = [pytest.mark.postgres, pytest.mark.prometheus, pytest.mark.timeout(240)]

LEASE = 1.5
SHORT = {"window": "5s", "for": "2s"}
RULES = {"InstanceDown": SHORT, "MonitorStoreDegraded": SHORT, "Watchdog": {}}
WAIT = 30.0  # seconds any one step may take on a loaded two-core machine


@contextlib.contextmanager
def scrape_target(directory: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A process Prometheus scrapes as job ``api`` (a static exposition over HTTP)."""
    (directory / "metrics.txt").write_text("dynoscope_probe 1\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def status(port: int) -> dict[str, Any]:
    """What an engine tells its peers; ``mode: gone`` when it does not answer."""
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}{PEER_PATH}", timeout=1).json())
    except (httpx.HTTPError, ValueError):
        return {"mode": "gone"}


def modes(ports: list[int]) -> Counter[str]:
    return Counter(status(port)["mode"] for port in ports)


def since(receiver: CountingReceiver, mark: int, name: str) -> Counter[tuple[str, str]]:
    """(fingerprint, status) of each ``name`` notification after position ``mark``."""
    return Counter(
        (alert["fingerprint"], alert["status"])
        for alert in receiver.alerts[mark:]
        if alert["labels"]["alertname"] == name
    )


def seen(receiver: CountingReceiver, mark: int, name: str, state: str) -> bool:
    return any(s == state for _, s in since(receiver, mark, name))


class Deployment:
    """The engines, their metrics ports (peers of each other), the store and the target."""

    def __init__(self, receiver: CountingReceiver, store: Store, directory: Path) -> None:
        self.receiver = receiver
        self.store = store
        self.directory = directory
        self.ports: list[int] = []

    def peers_of(self, number: int, count: int) -> dict[str, str]:
        while len(self.ports) < count:
            self.ports.append(free_port())
        others = [f"http://127.0.0.1:{p}" for n, p in enumerate(self.ports) if n != number]
        return {
            "METRICS_PORT": str(self.ports[number]),
            "ALERT_PEERS": ",".join(others),
            "INSTANCE_ID": f"engine-{number}",
        }

    async def one_leader(self, ports: list[int], *, seconds: float = WAIT) -> float:
        """Seconds until exactly one engine leads and the others stand by."""
        started = time.monotonic()
        await eventually(
            lambda: modes(ports) == Counter({"leader": 1, "standby": len(ports) - 1}),
            seconds=seconds,
            what=f"one leader among {len(ports)} ({modes(ports)})\n{logs(self.directory)}",
        )
        return time.monotonic() - started


@contextlib.asynccontextmanager
async def deployment(
    cluster: Cluster, directory: Path, *, target_port: int
) -> AsyncIterator[tuple[Deployment, dict[str, str]]]:
    url = cluster.create_database(f"ha_{uuid.uuid4().hex[:8]}")
    store_engine = open_store(AlertSettings.from_env({"ALERT_STORE_URL": url}))
    await upgrade(store_engine)
    scrape = {
        "job_name": "api",
        "metrics_path": "/metrics.txt",
        "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
    }
    try:
        async with counting_receiver() as receiver:
            with running_prometheus({}, scrape_configs=[scrape]) as prometheus:
                environ = {
                    **os.environ,
                    "LOG_LEVEL": "INFO",
                    "PROMETHEUS_URL": prometheus.url,
                    "ALERT_RULES_PATH": str(rules_file(directory, RULES)),
                    "ALERT_STORE_URL": url,
                    "ALERT_STORE_TIMEOUT": "0.5",
                    "ALERT_WEBHOOK_URL": receiver.url,
                    "ALERT_LEASE_SECONDS": f"{LEASE:g}",
                }
                yield Deployment(receiver, Store(store_engine), directory), environ
    finally:
        await store_engine.dispose()


@pytest.mark.parametrize("count", [2, 3])
async def test_engines_keep_paging_through_a_store_outage_and_come_back_clean(
    live_cluster: Cluster, tmp_path: Path, count: int
) -> None:
    target_port = free_port()
    async with deployment(live_cluster, tmp_path, target_port=target_port) as (ha, environ):
        with (
            scrape_target(tmp_path, target_port) as target,
            engines(count, environ, tmp_path, each=lambda n: ha.peers_of(n, count)),
        ):
            receiver, ports = ha.receiver, ha.ports
            await ha.one_leader(ports)
            await eventually(
                lambda: seen(receiver, 0, "Watchdog", "firing"),
                seconds=WAIT,
                what=f"the first notification\n{logs(tmp_path)}",
            )
            mark = len(receiver.alerts)

            # The store goes away hard; a scraped instance dies and comes back meanwhile.
            stopped_at = time.monotonic()
            live_cluster.kill()
            await eventually(
                lambda: seen(receiver, mark, "MonitorStoreDegraded", "firing"),
                seconds=WAIT,
                what=f"MonitorStoreDegraded during the outage\n{logs(tmp_path)}",
            )
            first = time.monotonic() - stopped_at
            target.send_signal(signal.SIGKILL)
            target.wait()
            killed_at = time.monotonic()
            await eventually(
                lambda: seen(receiver, mark, "InstanceDown", "firing"),
                seconds=WAIT,
                what=f"InstanceDown during the outage\n{logs(tmp_path)}",
            )
            down = time.monotonic() - killed_at
            with scrape_target(tmp_path, target_port):
                await eventually(
                    lambda: seen(receiver, mark, "InstanceDown", "resolved"),
                    seconds=WAIT,
                    what=f"InstanceDown resolved during the outage\n{logs(tmp_path)}",
                )
                assert not live_cluster.up, "all of it must reach on-call while the store is down"
                acting = modes(ports)["degraded"]
                during = {
                    name: since(receiver, mark, name)
                    for name in ("InstanceDown", "MonitorStoreDegraded")
                }

                # The store comes back: one leader, each transition once in its history.
                live_cluster.start()
                back = await ha.one_leader(ports)
                history = await settled_history(ha.store)
                after = len(receiver.alerts)
                await eventually(
                    lambda: seen(receiver, mark, "MonitorStoreDegraded", "resolved"),
                    seconds=WAIT,
                    what=f"MonitorStoreDegraded resolved\n{logs(tmp_path)}",
                )
                settled = since(receiver, after, "InstanceDown")
    print(
        f"\n{count} engines: store stopped -> first notification {first:.1f} s; instance killed"
        f" -> InstanceDown {down:.1f} s; {acting} engine(s) acting alone; one leader"
        f" {back:.1f} s after the store returned",
        file=sys.stderr,
    )
    # At most one delivery per engine per transition, each with one dedup key per alert.
    for name, counts in during.items():
        assert counts, name
        assert all(n <= count for n in counts.values()), (name, counts)
        assert len({fingerprint for fingerprint, _ in counts}) == 1, (name, counts)
    # Once in history; nothing sent again once the store is back.
    for name in ("InstanceDown", "MonitorStoreDegraded"):
        for state in (AlertState.FIRING, AlertState.RESOLVED):
            assert history[(name, state)] == 1, (name, state, history)
    assert settled == Counter(), settled


async def settled_history(store: Store) -> Counter[tuple[str, AlertState]]:
    """Firing and resolved transitions per rule in the store, once the leader has written
    what it decided during the outage (read until two reads a second apart agree)."""
    previous: Counter[tuple[str, AlertState]] | None = None
    deadline = time.monotonic() + WAIT
    while True:
        with contextlib.suppress(Exception):
            entries = await store.history(limit=10_000)
            counts = Counter(
                (h.rule, h.state)
                for h in entries
                if h.state in (AlertState.FIRING, AlertState.RESOLVED)
            )
            if counts == previous and counts[("InstanceDown", AlertState.RESOLVED)]:
                return counts
            previous = counts
        assert time.monotonic() < deadline, f"history never settled: {previous}"
        await asyncio.sleep(1.0)


async def test_an_engine_cut_off_from_the_store_stays_quiet_while_the_leader_reaches_it(
    live_cluster: Cluster, tmp_path: Path
) -> None:
    target_port = free_port()
    async with (
        deployment(live_cluster, tmp_path, target_port=target_port) as (ha, environ),
        tcp_proxy(live_cluster.port) as proxy,
    ):
        proxied = environ["ALERT_STORE_URL"].replace(f":{live_cluster.port}/", f":{proxy.port}/")
        with (
            scrape_target(tmp_path, target_port) as target,
            engines(1, environ, tmp_path, each=lambda n: ha.peers_of(n, 2)),
        ):
            await ha.one_leader(ha.ports[:1])
            with engines(
                1,
                {**environ, "ALERT_STORE_URL": proxied},
                tmp_path,
                each=lambda n: ha.peers_of(n, 2),
                first=1,
            ):
                await ha.one_leader(ha.ports)
                mark = len(ha.receiver.alerts)
                proxy.cut()
                target.send_signal(signal.SIGKILL)
                target.wait()
                await eventually(
                    lambda: seen(ha.receiver, mark, "InstanceDown", "firing"),
                    seconds=WAIT,
                    what=f"InstanceDown from the leader\n{logs(tmp_path)}",
                )
                # Well past a lease without the store: the cut-off engine asks its peer,
                # which reaches the store, and stays standby.
                deadline = time.monotonic() + 4 * LEASE
                while time.monotonic() < deadline:
                    cut_off = status(ha.ports[1])
                    assert cut_off["mode"] == "standby", (cut_off, logs(tmp_path))
                    await asyncio.sleep(0.2)
                assert cut_off["store_reachable"] is False
                counts = since(ha.receiver, mark, "InstanceDown")
    assert set(counts.values()) == {1}, counts  # the leader's alone, once
    assert "on its own" not in (tmp_path / "engine-1.log").read_text()


async def test_in_process_engines_of_api_instances_act_alone_and_come_back_to_one_leader(
    live_cluster: Cluster, tmp_path: Path
) -> None:
    """API instances sharing a PostgreSQL store each run the engine in-process
    (``embedded_engine``): the same election, the same fail-open."""
    url = live_cluster.create_database(f"ha_{uuid.uuid4().hex[:8]}")
    async with counting_receiver() as receiver:
        settings = AlertSettings.from_env(
            {
                "ALERT_STORE_URL": url,
                "ALERT_STORE_TIMEOUT": "0.5",
                "ALERT_LEASE_SECONDS": f"{LEASE:g}",
                "ALERT_WEBHOOK_URL": receiver.url,
                "ALERT_RULES_PATH": str(
                    rules_file(tmp_path, {"MonitorStoreDegraded": SHORT, "Watchdog": {}})
                ),
            }
        )
        async with (
            embedded_engine(settings, metrics=None, collectors=[], instance="api-1") as one,
            embedded_engine(settings, metrics=None, collectors=[], instance="api-2") as two,
        ):
            assert one is not None and two is not None
            both = (one, two)

            def count(mode: str) -> int:
                return sum(1 for m in both if m.status()["mode"] == mode)

            await eventually(lambda: count("leader") == 1, seconds=WAIT, what="one leader")
            live_cluster.kill()
            await eventually(
                lambda: count("degraded") == 2, seconds=WAIT, what="both act without the store"
            )
            await eventually(
                lambda: seen(receiver, 0, "MonitorStoreDegraded", "firing"),
                seconds=WAIT,
                what="MonitorStoreDegraded from the in-process engines",
            )
            live_cluster.start()
            await eventually(
                lambda: count("leader") == 1 and count("standby") == 1,
                seconds=WAIT,
                what="one leader again",
            )
            firing = since(receiver, 0, "MonitorStoreDegraded")
    assert all(n <= 2 for n in firing.values()), firing
