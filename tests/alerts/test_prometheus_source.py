"""The Prometheus source against a real Prometheus: answers, failures, one request per query."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.engine.query import QueryFailed, Vector
from alerts.engine.sources.prometheus import PrometheusSource
from alerts.rules.rule import RawQuery, SignalQuery
from alerts.rules.signal import SignalArgs
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.stack import free_port

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Prometheus]:
    with running_prometheus({}) as server:
        yield server


def now() -> datetime:
    return datetime.now(UTC)


async def test_answers_vectors_and_scalars(prometheus: Prometheus) -> None:
    vector = RawQuery('label_replace(vector(0.25), "route", "/p", "", "")')
    scalar = RawQuery("scalar(vector(NaN))")
    async with httpx.AsyncClient() as client:
        results = await PrometheusSource(url=prometheus.url, client=client).run(
            [vector, scalar], now=now()
        )
    got = results[vector]
    assert isinstance(got, Vector) and [(s.labels, s.value) for s in got.samples] == [
        ((("route", "/p"),), 0.25)
    ]
    nan = results[scalar]
    assert isinstance(nan, Vector) and math.isnan(nan.samples[0].value)


async def test_a_signal_without_series_is_no_data_not_a_failure(prometheus: Prometheus) -> None:
    query = SignalQuery("db_slow_queries_per_minute", SignalArgs(by=("instance",)))
    async with httpx.AsyncClient() as client:
        results = await PrometheusSource(url=prometheus.url, client=client).run([query], now=now())
    assert results[query] == Vector()


async def test_bad_promql_and_unreachable_servers_are_failures(prometheus: Prometheus) -> None:
    bad = RawQuery("sum(")
    async with httpx.AsyncClient() as client:
        rejected = await PrometheusSource(url=prometheus.url, client=client).run([bad], now=now())
        down = await PrometheusSource(url=f"http://127.0.0.1:{free_port()}", client=client).run(
            [bad], now=now()
        )
    assert isinstance(rejected[bad], QueryFailed) and "parse error" in rejected[bad].reason  # type: ignore[union-attr]
    assert isinstance(down[bad], QueryFailed) and "unreachable" in down[bad].reason  # type: ignore[union-attr]


async def test_timeouts_are_failures(prometheus: Prometheus) -> None:
    # A listening socket that never answers.
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with httpx.AsyncClient() as client:
            source = PrometheusSource(url=url, client=client, timeout=0.2)
            query = RawQuery("vector(1)")
            results = await source.run([query], now=now())
    assert isinstance(results[query], QueryFailed) and "timed out" in results[query].reason  # type: ignore[union-attr]


async def test_shared_queries_are_sent_once(prometheus: Prometheus) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    args = SignalArgs(by=("route",), window=timedelta(minutes=5))
    same = [
        SignalQuery("http_latency_p95_seconds", args),
        SignalQuery("http_latency_p95_seconds", args),
    ]
    raw_twin = RawQuery(same[0].promql)  # the same PromQL written out by hand
    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        results = await PrometheusSource(url=prometheus.url, client=client).run(
            [*same, raw_twin, RawQuery("vector(1)")], now=now()
        )
    assert len(sent) == 2
    assert len(results) == 3
