"""``/metrics`` on a port of its own (``METRICS_PORT``), off the public listener.

A small threaded WSGI server, like the client library's ``start_http_server``, but with the
bearer-token check. With several workers (multiprocess mode) every worker binds the port with
``SO_REUSEPORT`` and any of them can answer, since each scrape merges all workers' files.
A process may also answer a few status paths here (the alert engine's ``/-/engine``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.registry import Collector

from exporters.metrics import authorised, expose

log = logging.getLogger("dynoscope.metrics")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


# A status path's answer, from the request's query parameters (one value each).
Status = Callable[[Mapping[str, str]], Mapping[str, object] | None]


def metrics_wsgi_app(
    source: Collector, *, token: str | None, status: Mapping[str, Status] | None = None
) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering every GET with the exposition of ``source``, except at the paths
    of ``status``, which answer with their function's JSON (no token: nothing secret)."""
    routes = dict(status or {})

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        answer = routes.get(environ.get("PATH_INFO", ""))
        if answer is not None:
            return _status(answer, environ, start_response, token=token)
        headers = {
            "authorization": environ.get("HTTP_AUTHORIZATION", ""),
            "accept": environ.get("HTTP_ACCEPT", ""),
            "accept-encoding": environ.get("HTTP_ACCEPT_ENCODING", ""),
        }
        result = expose(source, token=token, headers=headers)
        status = "200 OK" if result.status_code == 200 else "401 Unauthorized"
        start_response(status, list(result.headers.items()))
        return [result.body]

    return app


def _status(
    answer: Status, environ: dict[str, Any], start_response: StartResponse, *, token: str | None
) -> Iterable[bytes]:
    json_type = [("Content-Type", "application/json")]
    if not authorised(token, environ.get("HTTP_AUTHORIZATION")):
        start_response("401 Unauthorized", [*json_type, ("WWW-Authenticate", "Bearer")])
        return [b'{"error": "unauthorized", "detail": "a valid bearer token is required"}']
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    try:
        body = answer(query)
    except ValueError as exc:
        start_response("400 Bad Request", json_type)
        return [json.dumps({"error": "bad_request", "detail": str(exc)}).encode()]
    if body is None:
        start_response("404 Not Found", json_type)
        return [b'{"error": "not_found", "detail": "nothing answers here"}']
    start_response("200 OK", json_type)
    return [json.dumps(body).encode()]


class MetricsServer:
    """Serve ``source`` on ``host:port`` in a daemon thread until ``stop()``."""

    def __init__(
        self,
        source: Collector,
        *,
        host: str,
        port: int,
        token: str | None,
        reuse_port: bool = False,
        status: Mapping[str, Status] | None = None,
    ) -> None:
        self._app = metrics_wsgi_app(source, token=token, status=status)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_port)

    def start(self) -> bool:
        """Bind and serve; False (logged) when the port is taken."""
        server_class = type("_BoundServer", (_Server,), {"reuse_port": self._reuse_port})
        try:
            self._server = make_server(
                self._host, self._port, self._app, server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            log.error("metrics port %d unavailable: %s", self._port, exc.strerror or exc)
            return False
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="dynoscope-metrics",
            daemon=True,
        )
        self._thread.start()
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
