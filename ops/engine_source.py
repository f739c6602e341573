"""A metric source that asks a running API's in-process engine (``POST /alerts/query``).

Where no Prometheus runs, the engine inside the API keeps a window of what the process
saw; this source asks it the report's signals over HTTP, as ``PrometheusSource`` asks
Prometheus, so ``read_report`` works on either.

    source = EngineSource(url="http://127.0.0.1:8000", token=admin_token, client=client)
    answers = await source.run([SignalQuery(...)], now=now)
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import httpx

from alerts.engine.query import QueryFailed, QueryResult, Sample, Vector, labels_of
from alerts.errors import ReportError
from alerts.rules.duration import format_duration
from alerts.rules.rule import Query, RawQuery, SignalQuery


class EngineSource:
    """Signals from the engine of the API at ``url``; ``ReportError`` when it cannot answer
    at all (unreachable, no such route, the token refused), a ``QueryFailed`` per query it
    could not compute."""

    name = "engine"

    def __init__(self, *, url: str, token: str | None, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._client = client
        self.covered_seconds: float | None = None
        """How much of the longest window the engine had sampled, after a ``run``."""

    async def run(self, queries: Collection[Query], *, now: datetime) -> dict[Query, QueryResult]:
        asked = [q for q in queries if isinstance(q, SignalQuery)]
        results: dict[Query, QueryResult] = {
            q: QueryFailed("the engine's window answers signals, not PromQL")
            for q in queries
            if isinstance(q, RawQuery)
        }
        if not asked:
            return results
        body = await self._post({"queries": [_ask(q) for q in asked]})
        answers = body.get("results")
        if not isinstance(answers, list) or len(answers) != len(asked):
            raise ReportError(f"{self.url}/alerts/query answered something else than asked")
        self.covered_seconds = float(body.get("covered_seconds") or 0.0)
        for query, answer in zip(asked, answers, strict=True):
            results[query] = _answer(answer)
        return results

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._token is None:
            raise ReportError(
                f"{self.url}: the engine's window is an admin route; set ADMIN_TOKEN to the "
                "API's admin token"
            )
        endpoint = f"{self.url}/alerts/query"
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = await self._client.post(endpoint, json=payload, headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot reach {self.url}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ReportError(f"{self.url} refused the admin token (ADMIN_TOKEN)")
        if response.status_code == 404:
            raise ReportError(
                f"{endpoint} does not exist: the API runs without ADMIN_TOKEN, or it is not "
                "dynoscope"
            )
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            detail = body.get("detail", response.reason_phrase)
            raise ReportError(f"{endpoint} answered {response.status_code}: {detail}")
        return body


def _ask(query: SignalQuery) -> dict[str, Any]:
    return {
        "signal": query.signal,
        "window": format_duration(query.args.window),
        "by": list(query.args.by),
        "params": query.args.params.model_dump(exclude_none=True),
    }


def _answer(answer: dict[str, Any]) -> QueryResult:
    if "failed" in answer:
        return QueryFailed(str(answer["failed"]))
    return Vector.of(
        Sample(labels=labels_of(each["labels"]), value=_number(each["value"]))
        for each in answer["samples"]
    )


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)
