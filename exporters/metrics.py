"""The ``/metrics`` exposition: content negotiation, multiprocess aggregation, bearer token.

Prometheus text format 0.0.4 by default; OpenMetrics (which carries exemplars) when the
scraper lists ``application/openmetrics-text`` in ``Accept``, as Prometheus does when exemplar
storage is on. In multiprocess mode every scrape merges the files of all worker processes,
so whichever worker answers, the instance is reported whole.
"""

from __future__ import annotations

import gzip
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

import anyio.to_thread
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class Exposition:
    """One rendered scrape: body and the headers that describe it."""

    body: bytes
    headers: dict[str, str]
    status_code: int = 200


def scrape_registry(registry: CollectorRegistry, multiprocess_dir: str | None) -> Collector:
    """What a scrape reads: the app's registry, or every worker's files in multiprocess mode.

    In multiprocess mode the process's own registry is not read at all: its values live in
    the worker files (``MmapedValue``) and would otherwise be counted twice.
    """
    if multiprocess_dir is None:
        return registry
    merged = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(merged, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return merged


def render(source: Collector, *, accept: str | None, accept_encoding: str | None) -> Exposition:
    """Render ``source`` in the format ``accept`` asks for, gzipped if the scraper allows."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(source)
    headers = {"Content-Type": content_type}
    if accept_encoding and gzip_accepted(accept_encoding):
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Exposition(body=body, headers=headers)


def authorised(token: str | None, authorization: str | None) -> bool:
    """True when no token is configured or ``authorization`` is ``Bearer <token>``."""
    if token is None:
        return True
    scheme, _, supplied = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not supplied:
        return False
    return hmac.compare_digest(supplied.strip().encode(), token.encode())


def unauthorised() -> Exposition:
    # The same JSON error shape as every other 4xx of the API.
    return Exposition(
        body=b'{"error":"unauthorized","detail":"metrics: bearer token required"}',
        headers={"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
        status_code=401,
    )


def expose(source: Collector, *, token: str | None, headers: Mapping[str, str]) -> Exposition:
    """Answer one scrape request with ``headers`` (any mapping of lower-case names)."""
    if not authorised(token, headers.get("authorization")):
        return unauthorised()
    return render(
        source, accept=headers.get("accept"), accept_encoding=headers.get("accept-encoding")
    )


class MetricsEndpoint:
    """Serves ``source`` from a route: ``app.add_route("/metrics", MetricsEndpoint(r).handle)``."""

    def __init__(self, source: Collector, *, token: str | None = None) -> None:
        self._source = source
        self._token = token

    async def handle(self, request: Request) -> Response:
        # Collecting reads every worker file in multiprocess mode: keep it off the event loop.
        result = await anyio.to_thread.run_sync(
            lambda: expose(self._source, token=self._token, headers=request.headers)
        )
        return Response(result.body, status_code=result.status_code, headers=result.headers)
