"""One native stack for the whole session, a webhook counting what it is sent, steady load.

The stack runs at test size: Prometheus scrapes every second and the shipped rules get short
windows and ``for`` (``RULES``), evaluated every second. Each scenario records how long its
alerts took from the fault to the webhook; the table is printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.native.postgres import MissingBinary
from deploy.native.stack import Stack, StackConfig, start
from tests.alerts.harness import Receiver, rules_file, webhook_receiver
from tests.support.load import Background, Users
from tests.support.postgres_cluster import missing

SHORT = {"window": "5s", "for": "3s"}
MIN_UPTIME = 60  # seconds: MemoryLeakSuspected ignores younger instances
CAPACITY: dict[str, Any] = {
    "params": {"saturation": 0.15, "rate_window": "10s", "target_utilization": 0.15}
}
RULES: dict[str, dict[str, Any]] = {
    "DatabaseUnavailable": SHORT,
    "ApiErrorRateHigh": {**SHORT, "keep_firing_for": "0"},
    "CacheUnavailable": SHORT,
    "CacheHitRateLow": {"window": "10s", "for": "3s"},
    "InstanceDown": SHORT,
    "DatabaseSlowQuery": {"window": "5s"},
    "ApiLatencyP95High": {"window": "5s", "for": "2s", "keep_firing_for": "0"},
    "ApiOverloaded": SHORT,
    "AuthenticationAbuse": {**SHORT, "params": {"min_requests_per_second": 0.2}},
    # A leak of 240 MB/min is 14 GB/h; the steady load's wobble stays far below 4 GiB/h over
    # 30 s (over 10 s, one scrape taken during a 64 MiB password hash came close). Instances
    # younger than MIN_UPTIME (just restarted) are left out, as fresh starts grow.
    "MemoryLeakSuspected": {
        "window": "30s",
        "for": "3s",
        "threshold": 4 * 1024**3,
        "params": {"min_uptime_seconds": MIN_UPTIME},
    },
    # Capacity at test size: the trend over 30 s of utilisation measured over 10 s. Three
    # instances share two cores with the load generators (and, on a shared machine, with
    # whatever else runs), so the fleet's utilisation stays low: measured on a loaded 2-core
    # machine, ~2.6 % under the steady load (trend slopes within 0.03 points/s) and up to ~9
    # % under the growing load (slopes to 0.17 points/s). Scaled to that: the forecast
    # watches 15 % within 72 s (a slope of ~0.17 points/s from the steady level, six times
    # its noise) and instances are sized at 15 % of a core (the steady load needs one).
    "CapacityExhaustionForecast": {"window": "30s", "for": "2s", "threshold": 0.02, **CAPACITY},
    "CapacityExhaustionImminent": {"window": "30s", "for": "2s", "threshold": 0.005, **CAPACITY},
    "MonitorEvaluationFailing": SHORT,
    "MonitorStoreDegraded": SHORT,
    "Watchdog": {},
}
MAX_IN_FLIGHT = 2  # per instance: low, so that overload is reachable on two cores
MAX_IN_FLIGHT_AUTH = 1  # password hashes at once per instance: a login storm fills it
STEADY_USERS = 4
THINK = 0.25  # seconds between a user's requests
WARM = 0.8  # cache hit ratio the steady load reaches before the first scenario

TIMINGS: list[tuple[str, str, float]] = []


@dataclass
class Session:
    stack: Stack
    receiver: Receiver
    background: Background
    steady: Users
    timings: list[tuple[str, str, float]] = field(default_factory=lambda: TIMINGS)


@pytest.fixture(scope="session")
def native(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Session]:
    rules = rules_file(tmp_path_factory.mktemp("scenario-rules"), RULES)
    directory = Path(tempfile.mkdtemp(prefix="dynoscope-stack-"))
    with Background() as background:
        receiver = background.enter(webhook_receiver())
        config = StackConfig(
            directory=directory,
            rules_path=str(rules),
            scrape_interval="1s",
            webhooks={"test-hook": receiver.url},
            api_environ={
                "MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
                "MAX_IN_FLIGHT_AUTH": str(MAX_IN_FLIGHT_AUTH),
                # Every user of the session comes from this host, through nginx.
                "AUTH_REGISTER_PER_CLIENT": "1000/hour",
                "LOG_LEVEL": "WARNING",
            },
            scheduler_environ={"ALERT_LEASE_SECONDS": "3"},
            seed_properties=200,
            # Each alert its own group, sent at once: times measure the engine, not a wait
            # chosen for people, and each notification can be counted once.
            grouping={"group_by": ["..."], "group_wait": "0s", "group_interval": "1s"},
        )
        try:
            stack = start(config)
        except MissingBinary as exc:
            missing(exc)
        try:
            steady = background.users(
                stack.urls["nginx"], count=STEADY_USERS, think=THINK, write_every=10
            )
            warm(stack)
            yield Session(stack=stack, receiver=receiver, background=background, steady=steady)
            steady.stop()
        finally:
            stack.stop()
    if request.session.testsfailed:
        print(f"\nthe stack's logs are kept in {directory / 'logs'}", file=sys.stderr)
    else:
        shutil.rmtree(directory, ignore_errors=True)


def warm(stack: Stack) -> None:
    """Wait until the steady load has filled the cache (a cold one is CacheHitRateLow)."""
    query = (
        'sum(rate(cache_requests_total{result="hit"}[10s])) / sum(rate(cache_requests_total[10s]))'
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
            response = httpx.get(
                f"{stack.urls['prometheus']}/api/v1/query", params={"query": query}, timeout=5
            )
            if float(response.json()["data"]["result"][0]["value"][1]) >= WARM:
                return
        time.sleep(0.5)
    raise AssertionError(f"the cache hit ratio never reached {WARM} under steady load")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("native stack: fault -> notification at the webhook")
    for scenario, what, seconds in TIMINGS:
        terminalreporter.write_line(f"{scenario:<24} {what:<36} {seconds:6.2f} s")
