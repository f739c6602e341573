"""Real faults on the native stack, under steady load, seen through to the on-call webhook.

Every scenario starts once the stack is quiet (no alert active but Watchdog, in the alert
store), puts a fault on, waits for the alerts at the webhook, takes the fault off and waits
for the resolutions; so they can run in any order. ``pytest -s tests/scenarios`` prints each
time from fault to notification; the session ends with the table of them all.

The leak is switched on through the instance's admin fault API (``/admin/faults``), as an
operator would; the other faults are made on the real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scenarios.conftest import MIN_UPTIME, Session
from tests.support.load import Sample, p95

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.prometheus,
    pytest.mark.timeout(300),
    # Faults stop and start the session's stack: its processes are checked when the run ends.
    pytest.mark.shared_processes,
]

FIRE = 45.0  # seconds a fault may take to reach the webhook (rules need ~8 s; a busy box more)
RESOLVE = 60.0
CROWD = 8  # users logging in again and again, no think time
LOCK_SECONDS = 1.5  # each hold of the table lock: longer than the 1 s slow-query threshold


def alerts(session: Session) -> list[dict[str, Any]]:
    """Every alert notification the webhook received, in order."""
    return [alert for body in list(session.receiver.bodies) for alert in body["alerts"]]


def seen(
    session: Session, name: str, status: str, *, after: int, **labels: str
) -> dict[str, Any] | None:
    for alert in alerts(session)[after:]:
        matches = all(alert["labels"].get(k) == v for k, v in labels.items())
        if alert["labels"]["alertname"] == name and alert["status"] == status and matches:
            return alert
    return None


def wait_for(condition: Callable[[], object], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.1)


def timed(
    session: Session, scenario: str, names: list[str], status: str, *, after: int, since: float,
    seconds: float, **labels: str,
) -> None:  # fmt: skip
    """Wait for each of ``names`` in ``status``, all within ``seconds`` of ``since`` (one budget,
    not one each); record the time from ``since``."""
    for name in names:
        wait_for(
            lambda name=name: seen(session, name, status, after=after, **labels),  # type: ignore[misc]
            seconds=max(0.0, since + seconds - time.monotonic()),
            what=f"{name} {status} at the webhook ({scenario})",
        )
        took = time.monotonic() - since
        session.timings.append((scenario, f"{name} {status}", took))
        print(f"\n{scenario}: {name} {status} after {took:.1f} s", file=sys.stderr)


def active(session: Session) -> list[str]:
    """Names of the alerts pending or firing, from the alert store (through an instance)."""
    return [a["alertname"] for a in active_alerts(session)]


def active_alerts(session: Session) -> list[dict[str, Any]]:
    """The alerts pending or firing, with labels and value (for a failure to show)."""
    token = session.stack.secrets()["ADMIN_TOKEN"]
    for name in session.stack.instances:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(
                f"{session.stack.urls[name]}/alerts",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            if response.status_code == 200:
                return list(response.json()["alerts"])
    raise AssertionError("no instance answers /alerts")


def quiet(session: Session) -> int:
    """Wait until nothing but Watchdog is active; the webhook's position at that moment."""
    wait_for(
        lambda: set(active(session)) <= {"Watchdog"},
        seconds=RESOLVE,
        what=f"a quiet stack (active: {active(session)})",
    )
    return len(alerts(session))


def each_once(session: Session) -> None:
    """Each notification (an alert's episode and status) arrived once. Watchdog is a dead
    man's switch, announced again every minute on purpose."""
    counts = Counter(
        (a["fingerprint"], a["status"], a["startsAt"])
        for a in alerts(session)
        if a["labels"]["alertname"] != "Watchdog"
    )
    assert {key: n for key, n in counts.items() if n > 1} == {}


def failed(samples: list[Sample]) -> list[Sample]:
    """Requests that got no answer or a server error, except those shed by admission control
    (MAX_IN_FLIGHT is 2 at test size, so now and then two requests meet on one instance)."""
    return [s for s in samples if (s.status == 0 or s.status >= 500) and not s.shed]


def answered(samples: list[Sample], what: str) -> None:
    """Nothing failed, and at most 2 % shed; reported either way."""
    shed = [s for s in samples if s.shed]
    print(
        f"\n{what}: {len(samples)} requests through nginx, {len(failed(samples))} failed,"
        f" {len(shed)} shed",
        file=sys.stderr,
    )
    assert samples, "the steady users sent nothing"
    assert failed(samples) == []
    assert len(shed) <= 0.02 * len(samples)


def inhibited(session: Session, receiver: str = "test-hook") -> float:
    """Notifications for ``receiver`` the leading scheduler held back by inhibition."""
    total = 0.0
    for name in session.stack.schedulers:
        try:
            text = httpx.get(session.stack.urls[name], timeout=2).text
        except httpx.HTTPError:
            continue  # a scheduler restarting: the other one leads
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if (
                    sample.name == "dynoscope_notifications_total"
                    and labels.get("outcome") == "inhibited"
                    and labels.get("receiver") == receiver
                ):
                    total += sample.value
    return total


def test_postgres_stopped_pages_once_while_down_and_resolves_after_restart(
    native: Session,
) -> None:
    """One page: DatabaseUnavailable. ApiErrorRateHigh fires too (the API answers 503), and
    the shipped inhibition holds it back, its resolution as well."""
    mark = quiet(native)
    held_before = inhibited(native)
    fault_at = time.monotonic()
    native.stack.stop_postgres()
    try:
        timed(
            native, "postgres stopped", ["DatabaseUnavailable"], "firing",
            after=mark, since=fault_at, seconds=FIRE,
        )  # fmt: skip
        wait_for(
            lambda: inhibited(native) > held_before,
            seconds=FIRE,
            what="ApiErrorRateHigh held back while DatabaseUnavailable fires",
        )
        assert not native.stack.cluster.up, "the alerts must arrive during the outage"
        assert seen(native, "ApiErrorRateHigh", "firing", after=mark) is None
        held_firing = inhibited(native)
    finally:
        native.stack.start_postgres()
    timed(
        native, "postgres restarted", ["DatabaseUnavailable"], "resolved",
        after=mark, since=time.monotonic(), seconds=RESOLVE,
    )  # fmt: skip
    wait_for(
        lambda: inhibited(native) > held_firing,
        seconds=RESOLVE,
        what="ApiErrorRateHigh's resolution held back (its firing was)",
    )
    assert seen(native, "ApiErrorRateHigh", "resolved", after=mark) is None
    each_once(native)


def test_redis_stopped_alerts_while_the_api_answers_from_the_database(native: Session) -> None:
    mark = quiet(native)
    fault_at = time.monotonic()
    native.stack.stop_redis()
    try:
        timed(
            native, "redis stopped", ["CacheUnavailable", "CacheHitRateLow"], "firing",
            after=mark, since=fault_at, seconds=FIRE,
        )  # fmt: skip
        during = native.steady.since(fault_at)
    finally:
        native.stack.start_redis_again()
    answered(during, "redis down")  # from the database, through nginx
    timed(
        native, "redis restarted", ["CacheUnavailable", "CacheHitRateLow"], "resolved",
        after=mark, since=time.monotonic(), seconds=RESOLVE,
    )  # fmt: skip
    each_once(native)


def test_a_killed_instance_is_reported_while_nginx_keeps_traffic_flowing(native: Session) -> None:
    mark = quiet(native)
    instance = f"127.0.0.1:{native.stack.ports['api-3']}"
    fault_at = time.monotonic()
    native.stack.kill_instance(2)
    try:
        timed(
            native, "instance killed", ["InstanceDown"], "firing", after=mark,
            since=fault_at, seconds=FIRE, instance=instance,
        )  # fmt: skip
        during = native.steady.since(fault_at)
    finally:
        native.stack.restart_instance(2)
    # Only a request already on the killed instance can fail; nginx retries the rest.
    early = failed([s for s in during if s.at < fault_at + 1.0])
    late = failed([s for s in during if s.at >= fault_at + 1.0])
    print(
        f"\ninstance killed: {len(during)} requests through nginx, {len(early)} failed in the"
        f" first second, {len(late)} after",
        file=sys.stderr,
    )
    assert len(early) <= 3 and late == []
    timed(
        native, "instance restarted", ["InstanceDown"], "resolved", after=mark,
        since=time.monotonic(), seconds=RESOLVE, instance=instance,
    )  # fmt: skip
    each_once(native)


async def hold_lock(url: str) -> None:
    """Take ``properties`` exclusively for LOCK_SECONDS at a time, over and over."""
    connection = await asyncpg.connect(url)
    try:
        while True:
            async with connection.transaction():
                await connection.execute("LOCK TABLE properties IN ACCESS EXCLUSIVE MODE")
                await asyncio.sleep(LOCK_SECONDS)
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


@contextlib.contextmanager
def lock_held(session: Session) -> Iterator[None]:
    future = asyncio.run_coroutine_threadsafe(
        hold_lock(session.stack.url("dynoscope")), session.background.loop
    )
    try:
        yield
    finally:
        future.cancel()


def test_a_held_table_lock_makes_slow_queries_and_slow_requests(native: Session) -> None:
    mark = quiet(native)
    names = ["DatabaseSlowQuery", "ApiLatencyP95High"]
    fault_at = time.monotonic()
    writers = native.background.users(native.stack.urls["nginx"], count=3, think=0.1, write_every=1)
    try:
        with lock_held(native):
            timed(
                native, "table lock held", names, "firing", after=mark, since=fault_at,
                seconds=FIRE,
            )  # fmt: skip
    finally:
        writers.stop()
    timed(
        native, "table lock released", names, "resolved", after=mark, since=time.monotonic(),
        seconds=RESOLVE,
    )  # fmt: skip
    each_once(native)


def server_p95(session: Session, routes: str, window: str) -> float:
    """p95 of the requests the instances served on ``routes`` (a regex) over ``window``;
    shed requests are not in the histogram."""
    selector = f'job="api", route=~"{routes}"'
    query = (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(http_server_request_duration_seconds_bucket{{{selector}}}[{window}])))"
    )
    url = f"{session.stack.urls['prometheus']}/api/v1/query"
    result = httpx.get(url, params={"query": query}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else float("nan")


def test_overload_is_shed_and_reported_while_admitted_requests_stay_fast(
    native: Session,
) -> None:
    """A login storm with the right passwords (no rate limit applies): each login checks its
    password in a thread (argon2), so logins stay in flight long and fill their own class
    (MAX_IN_FLIGHT_AUTH), which sheds them while reads are admitted by theirs. (Cheap requests
    on two busy cores queue in the kernel, never in the app: admission control cannot see
    them; see the report.)"""
    mark = quiet(native)
    fault_at = time.monotonic()
    crowd = native.background.users(native.stack.urls["nginx"], count=CROWD, think=0, logins=True)
    try:
        timed(
            native, "overload (login storm)", ["ApiOverloaded"], "firing", after=mark,
            since=fault_at, seconds=FIRE,
        )  # fmt: skip
        reads = server_p95(native, "/properties.*", "10s")
        logins = server_p95(native, "/auth/login", "10s")
        during = crowd.since(fault_at)
        steady = native.steady.since(fault_at)
    finally:
        crowd.stop()
    shed = [s for s in during + steady if s.shed]
    admitted = [s for s in steady if s.status < 500 and s.status != 0]
    print(
        f"\noverload: {len(during)} logins answered, {len(shed)} requests shed (503 through"
        f" nginx); served p95 at the instances: reads {reads * 1000:.0f} ms, logins"
        f" {logins * 1000:.0f} ms; steady users' admitted requests p95 {p95(admitted) * 1000:.0f}"
        " ms through nginx",
        file=sys.stderr,
    )
    native.timings.append(("overload (login storm)", "served p95 of reads (not a delay)", reads))
    assert shed
    assert reads < 0.5, "admitted requests must stay fast: that is what shedding is for"
    timed(
        native, "overload ended", ["ApiOverloaded"], "resolved", after=mark,
        since=time.monotonic(), seconds=RESOLVE,
    )  # fmt: skip
    each_once(native)


GUESSERS = 8  # clients trying wrong passwords, no pause


async def guess(url: str, email: str, statuses: list[int]) -> None:
    """Wrong passwords for ``email`` as fast as the answers come."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for number in itertools.count():
            body = {"email": email, "password": f"guess-{number:08d}"}
            with contextlib.suppress(httpx.HTTPError):
                statuses.append((await client.post("/auth/login", json=body)).status_code)


def test_password_guessing_is_throttled_and_reported_while_reads_stay_fast(
    native: Session,
) -> None:
    mark = quiet(native)
    statuses: list[int] = []
    fault_at = time.monotonic()
    guessers = [
        asyncio.run_coroutine_threadsafe(
            guess(native.stack.urls["nginx"], "demo@example.com", statuses),
            native.background.loop,
        )
        for _ in range(GUESSERS)
    ]
    try:
        timed(
            native, "password guessing", ["AuthenticationAbuse"], "firing", after=mark,
            since=fault_at, seconds=FIRE,
        )  # fmt: skip
        steady = native.steady.since(fault_at)
    finally:
        for future in guessers:
            future.cancel()
    counts = Counter(statuses)
    reads = [s for s in steady if s.status < 500 and s.status != 0]
    print(
        f"\npassword guessing: {dict(counts)}; steady users' p95 {p95(reads) * 1000:.0f} ms"
        " through nginx",
        file=sys.stderr,
    )
    native.timings.append(("password guessing", "steady users' p95 (not a delay)", p95(reads)))
    # Throttled: a handful of guesses checked, the rest refused before any hash.
    assert counts[429] > 10 * counts[401], counts
    assert p95(reads) < 0.2, "reads must not pay for the guessing"
    timed(
        native, "guessing stopped", ["AuthenticationAbuse"], "resolved", after=mark,
        since=time.monotonic(), seconds=RESOLVE,
    )  # fmt: skip
    each_once(native)


async def listen(url: str, seconds: float) -> None:
    """An event-stream client through nginx, connected for ``seconds``, then gone."""
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        with contextlib.suppress(TimeoutError):
            async with (
                asyncio.timeout(seconds),
                client.stream("GET", "/properties/events") as response,
            ):
                assert response.status_code == 200
                async for _ in response.aiter_bytes():
                    pass


def test_steady_load_without_a_fault_raises_nothing_but_watchdog(native: Session) -> None:
    mark = quiet(native)
    started = time.monotonic()
    # An event stream open for 8 s (longer than the latency rule's window), then closed
    # halfway: it is not a slow request, so no latency alert may follow.
    stream = asyncio.run_coroutine_threadsafe(
        listen(native.stack.urls["nginx"], 8.0), native.background.loop
    )
    while time.monotonic() < started + 20:
        fired = [
            a
            for a in alerts(native)[mark:]
            if a["labels"]["alertname"] != "Watchdog" and a["status"] == "firing"
        ]
        assert fired == [], f"alerts without a fault: {fired}"
        unexpected = [
            {key: a[key] for key in ("alertname", "state", "labels", "value", "active_at")}
            for a in active_alerts(native)
            if a["alertname"] != "Watchdog"
        ]
        assert unexpected == [], f"active without a fault: {unexpected}"
        time.sleep(0.5)
    stream.result(timeout=5)  # it connected, and closed when it was let go
    wait_for(
        lambda: seen(native, "Watchdog", "firing", after=0),
        seconds=FIRE,
        what="Watchdog at the webhook",
    )
    answered(native.steady.since(started), "steady load")


def test_each_notification_arrives_once(native: Session) -> None:
    wait_for(
        lambda: seen(native, "Watchdog", "firing", after=0),
        seconds=FIRE,
        what="Watchdog at the webhook",
    )
    each_once(native)


def uptime(session: Session, instance: str) -> float:
    """Seconds since ``instance``'s process started, as Prometheus last scraped it (0 when
    it has no answer yet)."""
    query = f'time() - process_start_time_seconds{{instance="{instance}"}}'
    with contextlib.suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
        response = httpx.get(
            f"{session.stack.urls['prometheus']}/api/v1/query", params={"query": query}, timeout=5
        )
        return float(response.json()["data"]["result"][0]["value"][1])
    return 0.0


def test_a_leaking_instance_is_reported_alone(native: Session) -> None:
    mark = quiet(native)
    leaking = "api-1"
    url = f"{native.stack.urls[leaking]}/admin/faults/memory_leak"
    auth = {"Authorization": f"Bearer {native.stack.secrets()['ADMIN_TOKEN']}"}
    instance = f"127.0.0.1:{native.stack.ports[leaking]}"
    # The rule leaves fresh processes out (they grow as they warm up): a leak starts on an
    # instance old enough to be watched, or the test would measure the guard, not the rule.
    wait_for(
        lambda: uptime(native, instance) >= MIN_UPTIME,
        seconds=MIN_UPTIME + 10,
        what=f"{instance} up for {MIN_UPTIME} s",
    )
    fault_at = time.monotonic()
    made = httpx.put(url, json={"rate_mb_per_min": 240, "cap_mb": 200}, headers=auth, timeout=10)
    assert made.status_code == 200, made.text
    try:
        timed(
            native, "memory leak on one instance", ["MemoryLeakSuspected"], "firing",
            after=mark, since=fault_at, seconds=FIRE, instance=instance,
        )  # fmt: skip
    finally:
        ended = httpx.delete(url, headers=auth, timeout=10)
    assert ended.status_code == 200 and ended.json()["active"] is False, ended.text
    timed(
        native, "memory freed", ["MemoryLeakSuspected"], "resolved", after=mark,
        since=time.monotonic(), seconds=RESOLVE, instance=instance,
    )  # fmt: skip
    leaking_instances = {
        a["labels"].get("instance")
        for a in alerts(native)[mark:]
        if a["labels"]["alertname"] == "MemoryLeakSuspected"
    }
    assert leaking_instances == {instance}  # the others did not leak and were not reported
    each_once(native)
