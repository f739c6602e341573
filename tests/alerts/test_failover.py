"""Three ``dynoscope alerts run`` processes on one PostgreSQL store: the leader is SIGKILLed
while a webhook is in flight, a standby takes over, and no notification is lost.

The rule needs nothing scraped: Prometheus's own clock makes a new alert every few seconds
(``count_values`` turns ``floor(time() / 3)`` into a label), so the old one resolves as the
new one fires and notifications keep flowing through the kill. The receiver is slow on
purpose (it answers after ``HOLD`` seconds), so the kill lands while a send is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.engine.monitor import open_store
from alerts.engine.state import AlertState
from alerts.settings import AlertSettings
from alerts.store.lease import StoreLease
from alerts.store.migrate import upgrade
from alerts.store.schema import lease as lease_table
from alerts.store.store import Store
from tests.alerts.harness import eventually
from tests.alerts.processes import CountingReceiver, Key, counting_receiver, engines, logs
from tests.support.prometheus import running_prometheus

INTERVAL = 2.0
LEASE = 1.5
HOLD = 0.4
RULES = f"""\
groups:
  - name: ha
    interval: {INTERVAL:g}s
    rules:
      - alert: Tick
        expr: count_values("n", floor(vector(time()) / 3))
        labels: {{severity: warning}}
"""


@contextlib.asynccontextmanager
async def ha_stack(
    store_url: str, environ: dict[str, str], directory: Path
) -> AsyncIterator[tuple[CountingReceiver, dict[str, str], Store]]:
    """A migrated PostgreSQL store, a counting receiver, and a Prometheus for the rule; with
    the environment every engine process of the test runs in."""
    rules = directory / "ha.yml"
    rules.write_text(RULES)
    store_engine = open_store(AlertSettings.from_env({"ALERT_STORE_URL": store_url}))
    await upgrade(store_engine)
    try:
        async with counting_receiver(HOLD) as receiver:
            with running_prometheus({}) as prometheus:
                yield (
                    receiver,
                    {
                        **os.environ,
                        **environ,
                        "LOG_LEVEL": "INFO",
                        "PROMETHEUS_URL": prometheus.url,
                        "ALERT_RULES_PATH": str(rules),
                        "ALERT_STORE_URL": store_url,
                        "ALERT_WEBHOOK_URL": receiver.url,
                        "ALERT_LEASE_SECONDS": f"{LEASE:g}",
                    },
                    Store(store_engine),
                )
    finally:
        await store_engine.dispose()


async def lease_row(store: Store) -> tuple[str, int]:
    async with store.engine.connect() as connection:
        row = (await connection.execute(select(lease_table))).one_or_none()
    return ("", 0) if row is None else (row.holder, row.token)


async def lease_changes_hands(store: Store, token: int, *, directory: Path) -> None:
    """Wait, 10 s at most, until another engine holds the lease (a new token)."""
    deadline = time.monotonic() + 10
    while (await lease_row(store))[1] == token:
        assert time.monotonic() < deadline, logs(directory)
        await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.prometheus
async def test_a_standby_takes_over_from_a_killed_leader_and_loses_nothing(
    clean_postgres: str, sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    async with ha_stack(clean_postgres, sqlite_environ, tmp_path) as (receiver, environ, store):
        with engines(3, environ, tmp_path) as processes:
            pids = {p.pid for p in processes}
            await eventually(
                lambda: len({k for k, s in receiver.received if s == "resolved"}) >= 1,
                seconds=30,
                what=f"a first alert fired and resolved\n{logs(tmp_path)}",
            )
            holder, token = await lease_row(store)
            leader = int(holder.split(":")[1])
            assert leader in pids
            await eventually(
                lambda: +receiver.in_flight != Counter(),
                seconds=20,
                what="a notification in flight",
            )
            os.kill(leader, signal.SIGKILL)
            killed_at = time.monotonic()
            in_flight = set(+receiver.in_flight)
            assert in_flight
            await lease_changes_hands(store, token, directory=tmp_path)
            takeover = time.monotonic() - killed_at
            new_holder, _ = await lease_row(store)
            assert int(new_holder.split(":")[1]) in pids - {leader}
            print(f"\ntakeover after SIGKILL: {takeover:.2f} s", file=sys.stderr)
            assert takeover < 2 * INTERVAL
            before = len(set(receiver.received))
            await eventually(
                lambda: len(set(receiver.received)) >= before + 2,
                seconds=20,
                what=f"notifications from the new leader\n{logs(tmp_path)}",
            )

            async def every_transition_was_sent() -> set[Key]:
                history = await store.history(limit=10_000)
                announced = {
                    (h.fingerprint, h.state.value)
                    for h in history
                    if h.state in (AlertState.FIRING, AlertState.RESOLVED)
                }
                return announced - set(receiver.received)

            deadline = time.monotonic() + 15
            while missing := await every_transition_was_sent():
                assert time.monotonic() < deadline, f"never sent: {missing}"
                await asyncio.sleep(0.2)
            lease = StoreLease(store.engine, ttl=LEASE, holder="test")
            assert not await lease.acquire()  # still held by the new leader
        history = await store.history(limit=10_000)
    fingerprints = {h.fingerprint for h in history}
    counts = receiver.counts()
    assert {key for key, _ in counts} <= fingerprints  # nothing the store never decided
    repeated = {key: n for key, n in counts.items() if n > 1}
    # Only a send the killed leader could not record may come again, and only once.
    assert set(repeated) <= in_flight, (repeated, in_flight)
    assert all(n == 2 for n in repeated.values()), repeated
    print(
        f"notifications: {len(counts)} distinct, repeats {sum(repeated.values()) - len(repeated)}"
        f" (in flight at the kill: {len(in_flight)})",
        file=sys.stderr,
    )


@pytest.mark.postgres
@pytest.mark.prometheus
async def test_a_paused_leader_is_fenced_when_it_wakes_up(
    clean_postgres: str, sqlite_environ: dict[str, str], tmp_path: Path
) -> None:
    """SIGSTOP stands for a long GC pause or a frozen VM: the leader keeps its memory, and its
    clock has moved on when it resumes. It must not send, and its writes are refused."""
    async with ha_stack(clean_postgres, sqlite_environ, tmp_path) as (receiver, environ, store):
        with engines(2, environ, tmp_path) as processes:
            await eventually(
                lambda: len(receiver.received) >= 2,
                seconds=30,
                what=f"first notifications\n{logs(tmp_path)}",
            )
            holder, token = await lease_row(store)
            paused = int(holder.split(":")[1])
            os.kill(paused, signal.SIGSTOP)
            in_flight = set(+receiver.in_flight)
            try:
                await lease_changes_hands(store, token, directory=tmp_path)
                await asyncio.sleep(2 * INTERVAL)  # the standby leads for a while
            finally:
                os.kill(paused, signal.SIGCONT)
            resumed = len(receiver.received)
            await asyncio.sleep(3 * LEASE)
            holder_after, _ = await lease_row(store)
            assert int(holder_after.split(":")[1]) != paused
            old_log = next(
                (tmp_path / f"engine-{n}.log").read_text()
                for n, p in enumerate(processes)
                if p.pid == paused
            )
            assert "lost the lease" in old_log or "steps down" in old_log, old_log
            # The new leader goes on sending after the old one woke up.
            await eventually(
                lambda: len(receiver.received) > resumed,
                seconds=3 * INTERVAL,
                what=f"a notification after the paused leader resumed\n{logs(tmp_path)}",
            )
        history = await store.history(limit=10_000)
    counts = receiver.counts()
    assert {key for key, _ in counts} <= {h.fingerprint for h in history}
    repeated = {key: n for key, n in counts.items() if n > 1}
    assert set(repeated) <= in_flight, (repeated, in_flight)
