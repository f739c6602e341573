"""The capacity model of one instance: an M/M/c queue whose servers are its cores and whose
service time is the CPU time a request costs (``docs/capacity.md``).

Pure arithmetic on numbers already measured (CPU seconds per request, usable cores), used by
``dynoscope report`` and checked against load by ``bench/capacity_model.py``.

    >>> model = Model(cores=1, cpu_per_request=0.002)
    >>> round(model.saturation_rate)
    500
    >>> round(model.rate_at_p95(0.2))  # p95 reaches 200 ms at ~97 % of saturation
    485
"""

from __future__ import annotations

import math
from dataclasses import dataclass

QUANTILE = 0.95


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arrival waits (Erlang C) with ``servers`` and ``load`` Erlangs
    (arrival rate x service time); 1 at or past saturation.

    >>> round(erlang_c(1, 0.5), 3), round(erlang_c(2, 1.0), 3)
    (0.5, 0.333)
    """
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    # The Erlang B recursion is stable for any number of servers; C follows from B.
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = load * blocking / (k + load * blocking)
    utilisation = load / servers
    return blocking / (1 - utilisation + utilisation * blocking)


@dataclass(frozen=True)
class Model:
    """An instance: ``cores`` it can use (its servers, rounded, at least 1) and the CPU
    seconds one request costs (its mean service time); ``base`` is the part of a response's
    p95 that is not CPU (database and cache round trips), measured at light load."""

    cores: float
    cpu_per_request: float
    base: float = 0.0

    @property
    def servers(self) -> int:
        return max(1, round(self.cores))

    @property
    def service_time(self) -> float:
        """Seconds per request on one server: the CPU cost, stretched if the cores are fewer
        than the servers they are rounded to (a 0.5-core quota is one server at half speed)."""
        return self.cpu_per_request * self.servers / max(self.cores, 1e-9)

    @property
    def saturation_rate(self) -> float:
        """Requests per second at which every core is busy."""
        return self.servers / self.service_time

    def utilisation(self, rate: float) -> float:
        return rate / self.saturation_rate

    def p95(self, rate: float) -> float:
        """The response time p95 at ``rate``: the waiting time's p95 in the queue, plus one
        service time, plus ``base``; infinite at saturation."""
        if rate >= self.saturation_rate:
            return math.inf
        waits = erlang_c(self.servers, rate * self.service_time)
        drain = self.servers / self.service_time - rate
        waiting = math.log(waits / (1 - QUANTILE)) / drain if waits > 1 - QUANTILE else 0.0
        return self.base + self.service_time + waiting

    def rate_at_p95(self, target: float) -> float:
        """The request rate at which the p95 reaches ``target`` seconds (0 if it is already
        over at no load)."""
        low, high = 0.0, self.saturation_rate
        if self.p95(0.0) >= target:
            return 0.0
        for _ in range(100):
            middle = (low + high) / 2
            low, high = (middle, high) if self.p95(middle) < target else (low, middle)
        return low

    def mean_in_system(self, rate: float) -> float:
        """Requests in the instance on average (Little's law on the M/M/c response time)."""
        if rate >= self.saturation_rate:
            return math.inf
        waits = erlang_c(self.servers, rate * self.service_time)
        drain = self.servers / self.service_time - rate
        return rate * (waits / drain + self.service_time + self.base)

    def rate_at_concurrency(self, limit: float) -> float:
        """The request rate at which ``limit`` requests are in the instance on average:
        where admission control (``MAX_IN_FLIGHT``) starts to shed."""
        low, high = 0.0, self.saturation_rate
        for _ in range(100):
            middle = (low + high) / 2
            low, high = (middle, high) if self.mean_in_system(middle) < limit else (low, middle)
        return low
