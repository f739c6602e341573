"""Growing load on the native stack: the capacity signals see it coming before overload.

Cohorts of ``dynoscope load`` users (reads only, little think time) join through nginx one
after another. The fleet's CPU utilisation rises; ``dynoscope:instances_needed``, recorded by
the stack's Prometheus from the exported rules, rises from 1; and the capacity forecast
(test size: a 30 s trend, conftest.py) reaches the webhook before ``ApiOverloaded`` does, if
that fires at all.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import httpx
import pytest

from tests.scenarios.conftest import Session
from tests.scenarios.test_scenarios import FIRE, alerts, quiet, seen, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.prometheus,
    pytest.mark.timeout(300),
    pytest.mark.shared_processes,
]

COHORTS = 8
COHORT_USERS = 6
EVERY = 4.0  # seconds between cohorts
LOAD_SECONDS = 70  # the longest a cohort may run; the test stops them once it has seen all


def instances_needed(session: Session) -> float:
    """The recorded ``dynoscope:instances_needed`` now; NaN while Prometheus has none."""
    url = f"{session.stack.urls['prometheus']}/api/v1/query"
    try:
        answer = httpx.get(url, params={"query": "dynoscope:instances_needed"}, timeout=5)
        result = answer.json()["data"]["result"]
    except (httpx.HTTPError, ValueError, KeyError):
        return math.nan
    return float(result[0]["value"][1]) if result else math.nan


def cohort(session: Session, number: int) -> subprocess.Popen[bytes]:
    """``COHORT_USERS`` more users, niced: clients of a real service run on other machines,
    so here they take only the CPU the instances leave."""
    command = [
        *("nice", "-n", "15"),
        *(sys.executable, "-m", "dynoscope", "load", "--url", session.stack.urls["nginx"]),
        *("--users", str(COHORT_USERS), "--duration", f"{LOAD_SECONDS - number * EVERY:g}s"),
        *("--think", "0.02-0.1", "--mix", "browse=70,view=30", "--seed", str(number)),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_growing_load_raises_instances_needed_and_is_forecast_before_overload(
    native: Session,
) -> None:
    mark = quiet(native)
    wait_for(lambda: not math.isnan(instances_needed(native)), seconds=30, what="instances needed")
    assert instances_needed(native) == 1, "the steady load needs one instance"
    started = time.monotonic()
    loads: list[subprocess.Popen[bytes]] = []
    needed: list[float] = []

    def forecast() -> bool:
        return seen(native, "CapacityExhaustionForecast", "firing", after=mark) is not None

    try:
        while not (forecast() and max(needed, default=1) >= 2):
            if time.monotonic() > started + COHORTS * EVERY + FIRE:
                break
            if len(loads) < COHORTS and time.monotonic() >= started + len(loads) * EVERY:
                loads.append(cohort(native, len(loads)))
            needed.append(instances_needed(native))
            time.sleep(0.5)
        forecast_at = time.monotonic() - started
    finally:
        for process in loads:
            process.terminate()
        for process in loads:
            process.wait(timeout=30)
    firing = [a["labels"]["alertname"] for a in alerts(native)[mark:] if a["status"] == "firing"]
    peak = max((n for n in needed if not math.isnan(n)), default=math.nan)
    print(
        f"\ngrowing load: {len(loads)} cohorts of {COHORT_USERS} users; instances needed"
        f" 1 -> {peak:g}; alerts firing in order: {firing}",
        file=sys.stderr,
    )
    native.timings.append(("growing load", "CapacityExhaustionForecast firing", forecast_at))
    assert "CapacityExhaustionForecast" in firing, f"no forecast within the ramp: {firing}"
    assert peak >= 2, f"instances needed never rose from 1: {needed}"
    if "ApiOverloaded" in firing:
        assert firing.index("CapacityExhaustionForecast") < firing.index("ApiOverloaded")
