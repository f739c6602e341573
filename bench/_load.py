"""Load generation and read-outs for the capacity benchmark: wrk runs, scrapes, the chart."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

USERS_SCRIPT = """
cities = {%(cities)s}
prices = {%(prices)s}
c503 = 0
other = 0
threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  local path
  if math.random() < 0.7 then
    path = string.format("/properties?city=%%s&min_price=%%d",
      cities[math.random(#cities)], prices[math.random(#prices)])
  else
    path = "/properties/" .. math.random(%(items)d)
  end
  return wrk.format("GET", path)
end

-- Think time: each connection is one user who reads a page for 0.5 to 1.5 s.
delay = function()
  return math.random(500, 1500)
end

response = function(status, headers, body)
  if status == 503 then
    c503 = c503 + 1
  elseif status >= 400 then
    other = other + 1
  end
end

done = function(summary, latency, requests)
  local shed, failed = 0, 0
  for _, thread in ipairs(threads) do
    shed = shed + thread:get("c503")
    failed = failed + thread:get("other")
  end
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%.3f %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, shed, failed))
end
"""


@dataclass(frozen=True)
class UsersResult:
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    timeouts: int
    status_503: int
    other_errors: int


def _pinned(command: list[str], cpus: str) -> list[str]:
    if shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", cpus, *command]


def wrk_users(
    url: str,
    *,
    users: int,
    seconds: int,
    workdir: Path,
    cities: Sequence[str],
    min_prices: Sequence[int],
    items: int,
    cpus: str,
) -> UsersResult:
    script = workdir / "users.lua"
    script.write_text(
        USERS_SCRIPT
        % {
            "cities": ", ".join(f'"{city}"' for city in cities),
            "prices": ", ".join(str(price) for price in min_prices),
            "items": items,
        }
    )
    command = ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "--timeout", "2s", "-s", str(script)]
    output = subprocess.run(
        _pinned([*command, url], cpus),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    line = next((x for x in output.splitlines() if x.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    fields = line.split()[1:]
    requests, duration_us = int(fields[0]), int(fields[1])
    p50, p95, p99 = (float(x) for x in fields[2:5])
    connect, read, write, timeouts, shed, failed = (int(x) for x in fields[5:11])
    return UsersResult(
        requests=requests,
        seconds=duration_us / 1e6,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        timeouts=timeouts,
        status_503=shed,
        other_errors=connect + read + write + failed,
    )


_REQUESTS = re.compile(r"(\d+) requests in")


def wrk_plain(url: str, *, seconds: int, cpus: str, connections: int = 32) -> int:
    """Requests answered by a closed loop of ``connections`` (no think time)."""
    output = subprocess.run(
        _pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], cpus),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    found = _REQUESTS.search(output)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return int(found.group(1))


Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    text = httpx.get(url + "/metrics", timeout=10).text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def cache_errors(samples: Samples) -> float:
    return sum(
        value
        for name, labels, value in samples
        if name == "cache_requests_total" and labels.get("result") == "error"
    )


def _buckets(samples: Samples) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for name, labels, value in samples:
        if name == "http_server_request_duration_seconds_bucket":
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


def served_p95_ms(before: Samples, after: Samples) -> float:
    """p95 of the requests the server handled between two scrapes (interpolated as PromQL)."""
    start = _buckets(before)
    counts = sorted((le, value - start.get(le, 0.0)) for le, value in _buckets(after).items())
    if not counts or counts[-1][1] <= 0:
        return float("nan")
    rank = 0.95 * counts[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in counts:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return float("nan")


def chart(results: dict[int, Any], path: Path) -> None:
    """p95 (wrk, all answers) and throughput against users, one line per worker count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2))
    for workers, steps in sorted(results.items()):
        users = [s.users for s in steps]
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        latency.plot(users, [s.p95 for s in steps], marker="o", label=f"{label}, all answers")
        latency.plot(
            users,
            [s.served_p95 for s in steps],
            marker="x",
            linestyle="--",
            label=f"{label}, served",
        )
        throughput.plot(users, [s.rps for s in steps], marker="o", label=label)
    latency.axhline(200, color="grey", linewidth=0.8, linestyle=":")
    latency.set(xlabel="users (1 request per ~1 s each)", ylabel="p95 latency (ms)", yscale="log")
    latency.set_title("p95 latency")
    throughput.set(xlabel="users (1 request per ~1 s each)", ylabel="answers per second")
    throughput.set_title("throughput (served + 503)")
    for axes in (latency, throughput):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
