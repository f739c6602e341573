"""Instant queries over Prometheus's HTTP API (``GET /api/v1/query``).

    source = PrometheusSource(url="http://prometheus:9090", client=httpx.AsyncClient())
    results = await source.run(queries, now=now)

Queries with the same PromQL are sent once per call, at most ``concurrency`` at a time, each
with ``timeout`` seconds (passed to Prometheus too, so it stops working on a query nobody
waits for). Any failure becomes a ``QueryFailed`` naming the reason, never the URL: it may
carry credentials.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from alerts.engine.query import (
    Exemplar,
    Labels,
    QueryFailed,
    QueryResult,
    Sample,
    Vector,
    labels_of,
)
from alerts.errors import QueryError
from alerts.rules.duration import format_duration
from alerts.rules.rule import Query


class PrometheusSource:
    """Ask a Prometheus server; the HTTP client is handed in (tests and pooling)."""

    name = "prometheus"

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        timeout: float = 10.0,
        concurrency: int = 16,
    ) -> None:
        self.url = url.rstrip("/")
        self._endpoint = url.rstrip("/") + "/api/v1/query"
        self._exemplars = url.rstrip("/") + "/api/v1/query_exemplars"
        self._client = client
        self._timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        by_text: dict[str, list[Query]] = {}
        for query in queries:
            by_text.setdefault(query.promql, []).append(query)
        texts = list(by_text)
        answers = await asyncio.gather(*(self._ask(text, now) for text in texts))
        return {
            query: answer
            for text, answer in zip(texts, answers, strict=True)
            for query in by_text[text]
        }

    async def _ask(self, promql: str, now: datetime) -> QueryResult:
        try:
            async with self._limit:
                return await self.instant(promql, now=now)
        except QueryError as exc:
            return QueryFailed(str(exc))

    async def instant(self, promql: str, *, now: datetime) -> Vector:
        """One instant query at ``now``; raises ``QueryError``."""
        params = {
            "query": promql,
            "time": f"{now.timestamp():.3f}",
            "timeout": format_duration(timedelta(seconds=self._timeout)),
        }
        # One second more on the client than asked of Prometheus: its own timeout answers.
        body = await self._get(
            self._endpoint, params, promql=promql, what="query", seconds=self._timeout, slack=1
        )
        return _vector(body["data"], promql=promql)

    async def range(
        self, promql: str, *, start: datetime, end: datetime, step: timedelta
    ) -> dict[Labels, list[tuple[float, float]]]:
        """A range query: each series' ``(unix time, value)`` points; raises ``QueryError``."""
        params = {
            "query": promql,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step.total_seconds():g}",
        }
        body = await self._get(
            self._endpoint + "_range", params, promql=promql, what="query", seconds=self._timeout
        )
        return {
            labels_of(series.get("metric", {})): [(float(t), float(v)) for t, v in series["values"]]
            for series in body["data"].get("result", [])
        }

    async def _get(
        self,
        url: str,
        params: dict[str, str],
        *,
        promql: str,
        what: str,
        seconds: float,
        slack: float = 0.0,
    ) -> dict[str, Any]:
        """The JSON body of a successful API call; ``QueryError`` saying why otherwise."""
        try:
            response = await self._client.get(url, params=params, timeout=seconds + slack)
        except httpx.TimeoutException:
            message = f"timed out after {seconds}s"
            raise QueryError(message, query=promql, source=self.name) from None
        except httpx.TransportError as exc:
            raise QueryError(
                f"unreachable ({type(exc).__name__})", query=promql, source=self.name
            ) from None
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            reason = body.get("error") or f"HTTP {response.status_code}"
            raise QueryError(f"{what} rejected: {reason}", query=promql, source=self.name)
        return body

    async def exemplars(
        self,
        metric: str,
        *,
        matchers: Mapping[str, str],
        start: datetime,
        end: datetime,
        seconds: float,
    ) -> list[Exemplar]:
        """Exemplars of ``metric`` series matching ``matchers`` between ``start`` and ``end``
        (``GET /api/v1/query_exemplars``; needs ``--enable-feature=exemplar-storage``);
        raises ``QueryError``."""
        promql = selector(metric, matchers)
        params = {
            "query": promql,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
        }
        body = await self._get(
            self._exemplars, params, promql=promql, what="exemplars", seconds=seconds
        )
        return [
            Exemplar(
                labels=labels_of(
                    {k: v for k, v in series["seriesLabels"].items() if k != "__name__"}
                ),
                value=_value(str(example["value"])),
                at=float(example["timestamp"]),
                example=labels_of(example.get("labels") or {}),
            )
            for series in body.get("data") or []
            for example in series.get("exemplars") or []
        ]


def selector(metric: str, matchers: Mapping[str, str]) -> str:
    """A PromQL series selector, label values escaped.

    >>> selector("http_server_request_duration_seconds_bucket", {"route": "/properties"})
    'http_server_request_duration_seconds_bucket{route="/properties"}'
    """
    if not matchers:
        return metric
    inner = ",".join(f"{name}={json.dumps(value)}" for name, value in sorted(matchers.items()))
    return f"{metric}{{{inner}}}"


def _value(raw: str) -> float:
    # Prometheus writes "NaN", "+Inf" and "-Inf"; float() reads all three.
    return float(raw) if raw.lower() != "nan" else math.nan


def _vector(data: dict[str, Any], *, promql: str) -> Vector:
    kind = data.get("resultType")
    if kind == "scalar":
        return Vector((Sample((), _value(data["result"][1])),))
    if kind != "vector":
        raise QueryError(
            f"expected an instant vector, got {kind}", query=promql, source="prometheus"
        )
    samples = []
    for item in data["result"]:
        metric = {k: v for k, v in item["metric"].items() if k != "__name__"}
        samples.append(Sample(labels_of(metric), _value(item["value"][1])))
    return Vector.of(samples)
