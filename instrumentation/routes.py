"""Which route template served a request, learnt from the router as it routes.

Matching the path against the app's routes a second time (as most exporters do) costs a
regular-expression scan per request and goes wrong for nested routers, mounted sub-apps and
``root_path``. FastAPI's router already reports every route it selects, including the mount
prefixes on the way down, to a per-request record in ``scope["fastapi.telemetry"]``; a
``RouteTracker`` is such a record. It keeps FastAPI's own tracing switched off for the request
(FastAPI skips it when the key is present) and calls back when the route is known, so the
in-flight gauge can carry the route label.

For apps that are not FastAPI, ``route_of`` falls back to Starlette's ``scope["route"]``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from instrumentation.catalogue import OTHER_METHOD, UNMATCHED_ROUTE

KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
TRACKER_KEY = "fastapi.telemetry"

RouteCallback = Callable[[str | None, str], None]

try:
    from fastapi.telemetry._api import _RequestTelemetry
except ImportError:  # pragma: no cover - FastAPI without native telemetry hooks
    _RequestTelemetry = None  # type: ignore[assignment,misc]


def normalise_method(method: str) -> str:
    """The method as a label value: one fixed value for anything non-standard.

    >>> normalise_method("GET"), normalise_method("BREW")
    ('GET', '_OTHER')
    """
    return method if method in KNOWN_METHODS else OTHER_METHOD


class _FallbackTracker:
    """Used when FastAPI does not report routes: only ``scope["route"]`` is read."""

    route: str | None = None

    def __init__(self, method: str, on_route: RouteCallback | None = None) -> None:
        self.method = method


if _RequestTelemetry is not None:

    class _Tracker(_RequestTelemetry):
        """The per-request record FastAPI's router writes the selected route template to."""

        def __init__(self, method: str, on_route: RouteCallback | None = None) -> None:
            self._template: str | None = None
            self._on_route: RouteCallback | None = None
            super().__init__(span=None, span_method=method, data=None)
            self._on_route = on_route

        @property
        def route(self) -> str | None:
            return self._template

        @route.setter
        def route(self, value: str | None) -> None:
            previous, self._template = self._template, value
            if self._on_route is not None and value is not None and value != previous:
                self._on_route(previous, value)

    RouteTracker: type[Any] = _Tracker
else:  # pragma: no cover
    RouteTracker = _FallbackTracker


def route_of(scope: MutableMapping[str, Any], tracker: Any) -> str:
    """The template of the route that served ``scope``, or ``<unmatched>``."""
    template: str | None = getattr(tracker, "route", None)
    if template is None:
        route = scope.get("route")
        template = getattr(route, "path_format", None)
    return template if template is not None else UNMATCHED_ROUTE
