"""``POST /alerts/query``: the signals of an in-process engine's own window, for admins.

Where no Prometheus runs (the embedded default), the engine's sampled window is the only
record of what the process saw; this route lets a client ask it the questions it would ask
Prometheus, by signal (``docs/rules.md``) rather than PromQL:

    POST /alerts/query
    {"queries": [{"signal": "http_latency_p95_seconds", "window": "1h", "by": ["route"]}]}
    → {"source": "local", "covered_seconds": 754.0,
       "results": [{"samples": [{"labels": {"route": "/properties"}, "value": 0.012}]}]}

A result that could not be computed is ``{"failed": "<reason>"}``. A bad signal, window,
label or parameter is a 422 naming the query and field. ``covered_seconds`` is how much of
the longest window the engine's samples stand for, as Prometheus extrapolates a range (it
keeps its rules' longest window). An engine that reads Prometheus has nothing of its own to
answer: 409, ask Prometheus.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.engine.query import QueryFailed
from alerts.engine.sources import LocalSource
from alerts.http.state import engine_state
from alerts.rules.duration import parse_duration
from alerts.rules.rule import SignalQuery
from alerts.rules.signal import SignalArgs
from alerts.rules.signals import signal_named

MAX_QUERIES = 50


class SignalAsk(BaseModel):
    """One question: a signal over a window, grouped ``by`` labels, with its parameters."""

    model_config = ConfigDict(extra="forbid")

    signal: str
    window: str = "5m"
    by: list[str] = Field(default_factory=list, max_length=10)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("signal")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            signal_named(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown signal {value!r} (docs/rules.md lists them)") from None
        return value

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= timedelta(0):
            raise ValueError("must be longer than 0")
        return value

    def query(self) -> SignalQuery:
        """The engine's query; ``ValueError`` naming the label or parameter it refuses."""
        signal = signal_named(self.signal)
        unknown = sorted(set(self.by) - signal.labels)
        if unknown:
            raise ValueError(f"by: {self.signal} has no label {unknown[0]!r}")
        try:
            params = signal.params.model_validate(self.params)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"params.{field}: {error['msg']}") from None
        window = parse_duration(self.window)
        return SignalQuery(self.signal, SignalArgs(by=tuple(self.by), window=window, params=params))


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: Annotated[list[SignalAsk], Field(min_length=1, max_length=MAX_QUERIES)]


def add_query_routes(router: APIRouter) -> None:
    """``POST /query`` on ``router`` (the admin-only ``/alerts`` router)."""

    @router.post("/query")
    async def query(request: Request, body: QueryBody) -> dict[str, Any]:
        source = _local_source(request)
        queries = []
        for number, ask in enumerate(body.queries):
            try:
                queries.append(ask.query())
            except ValueError as exc:
                raise HTTPException(422, f"queries.{number}.{exc}") from None
        now = datetime.now(UTC)
        answers = await source.run(queries, now=now)
        longest = max(q.args.window for q in queries)
        return {
            "source": source.name,
            "covered_seconds": source.window(longest, now=now).extent,
            "results": [_result(answers[q]) for q in queries],
        }


def _local_source(request: Request) -> LocalSource:
    monitor = engine_state(request.app).monitor
    if monitor is None:
        raise HTTPException(409, "no alert engine runs in this process: ask its Prometheus")
    if not isinstance(monitor.source, LocalSource):
        raise HTTPException(409, "this engine reads Prometheus: ask Prometheus instead")
    return monitor.source


def _result(answer: Any) -> dict[str, Any]:
    if isinstance(answer, QueryFailed):
        return {"failed": answer.reason}
    return {
        "samples": [
            {"labels": dict(sample.labels), "value": _finite(sample.value)}
            for sample in answer.samples
        ]
    }


def _finite(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else value
