"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from alerts.http.app import (
    alert_routes,
    embedded_engine,
    runs_in_process,
    store_reader,
)
from alerts.http.peer import peer_routes
from alerts.http.state import engine_state
from api import __version__
from api.admission import AdmissionControl
from api.auth_metrics import AuthMetrics
from api.client import NoSniff
from api.errors import ApiError, Overloaded, TooManyRequests
from api.faults import Faults, build_faults
from api.faults.metrics import FaultMetrics
from api.limits import BodyLimit
from api.outage import OutageLog
from api.routes import auth, events, health, properties
from api.routes.auth import ENDPOINTS as AUTH_ENDPOINTS
from api.routes.auth import HASHING_PATHS
from api.routes.auth import count as count_attempt
from api.routes.faults import fault_routes
from api.services import Services, build_services
from api.settings import Mode, Settings
from console import CONSOLE_PREFIX, mount_console
from instrumentation.app import Telemetry, instrument_app, metrics_of
from instrumentation.catalogue import Catalogue

log = logging.getLogger("dynoscope")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """Build the API for ``settings``; resources open and close with the app's lifespan."""
    telemetry: Telemetry | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One place, in order: services, then their telemetry, then the alert engine that
        # reads it; closed in reverse.
        async with AsyncExitStack() as stack:
            built = services or build_services(settings)
            stack.push_async_callback(built.close)
            built.auth_metrics = auth_metrics
            if built.throttle is not None and metrics is not None:
                failures = metrics.dependency_errors.labels(dependency="rate_limits")
                built.throttle.on_error = failures.inc
            app.state.services = built
            if faults is not None:
                stack.push_async_callback(faults.close)  # no lock or leak outlives the app
            log.info("dynoscope %s: %s", __version__, settings.describe())
            if telemetry is not None:
                await telemetry.start(
                    engine=built.engine,
                    cache=built.cache,
                    redis=built.redis,
                    error_sources=[built.broadcaster],
                )
                stack.push_async_callback(telemetry.stop)
            await _start_alerts(app, stack, settings=settings, telemetry=telemetry)
            yield

    app = FastAPI(
        title="dynoscope property API",
        version=__version__,
        lifespan=lifespan,
        # Spans and HTTP metrics are instrumentation's. FastAPI's own would trace every
        # request a second time once a global provider is set, and even off it looks the
        # global providers up on every request (about 6 % of a cached read's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # The API's description is for developers: off in production unless API_DOCS_ENABLED.
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.add_middleware(NoSniff)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _include_routes(app, settings)
    _mount_console(app, settings)
    faults = _mount_faults(app, settings)
    _install_error_handlers(app)
    # The console is not the service's traffic: its pages stay out of the service's latency.
    telemetry = instrument_app(
        app, settings.telemetry, version=__version__, unmeasured=(CONSOLE_PREFIX,)
    )
    metrics = metrics_of(app)
    if faults is not None and metrics is not None:
        gauge = FaultMetrics(metrics.registry).fault_active
        faults.observe(lambda name, active: gauge.labels(fault=name).set(int(active)))
    auth_metrics = _admission(app, settings, metrics)
    return app


def _admission(app: FastAPI, settings: Settings, metrics: Catalogue | None) -> AuthMetrics | None:
    """Who the client is (behind trusted proxies) and admission control, outermost; the auth
    metric, which counts its refusals where admission control counts its own."""
    rejected = metrics.http_rejected_requests if metrics is not None else None
    on_reject = (lambda reason: rejected.labels(reason=reason).inc()) if rejected else None
    if settings.proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.proxies)
    # Outermost: a shed request costs next to nothing and touches no other layer.
    waited = metrics.http_admission_wait.observe if metrics is not None else None
    app.add_middleware(
        AdmissionControl,
        max_in_flight=settings.max_in_flight,
        retry_after=1,
        on_reject=on_reject,
        apart=HASHING_PATHS,
        admitted_prefixes=(CONSOLE_PREFIX,),
        max_wait=settings.admission_max_wait,
        max_queue=(
            settings.admission_max_queue
            if settings.admission_max_queue is not None
            else settings.max_in_flight
        ),
        on_wait=waited,
    )
    return AuthMetrics(metrics.registry, on_rejected=on_reject) if metrics is not None else None


def _include_routes(app: FastAPI, settings: Settings) -> None:
    # The router tries routes in order, and an included router's routes twice (once to
    # match, once to handle): the hot reads go first. Events before /properties/{id},
    # which would shadow /properties/events.
    app.include_router(events.router)
    app.include_router(properties.router)
    app.include_router(health.router)
    metrics_token = settings.telemetry.metrics_token
    app.include_router(
        peer_routes(metrics_token.get_secret_value() if metrics_token is not None else None)
    )
    app.include_router(auth.router)
    if settings.admin_token is not None:
        app.include_router(alert_routes(settings.admin_token.get_secret_value()))


def _mount_console(app: FastAPI, settings: Settings) -> None:
    """``/console`` with the admin routes: on wherever ``ADMIN_TOKEN`` is (in development
    ``dynoscope serve`` makes one), off otherwise."""
    if settings.admin_token is None or not settings.console_enabled:
        return
    mount_console(
        app,
        admin_token=settings.admin_token.get_secret_value(),
        alerts=settings.alerts,
        traces_file=settings.telemetry.traces_file,
        secure_cookies=settings.mode is Mode.PRODUCTION,
    )


def _mount_faults(app: FastAPI, settings: Settings) -> Faults | None:
    """``/admin/faults`` only with ``DYNOSCOPE_FAULTS_ENABLED`` (which requires ADMIN_TOKEN)."""
    app.state.faults = None
    if not settings.faults_enabled:
        return None
    if settings.admin_token is None:  # development only: the settings refuse it elsewhere
        log.warning(
            "DYNOSCOPE_FAULTS_ENABLED without ADMIN_TOKEN: no /admin/faults (set one, or start "
            "with `dynoscope serve`, which makes one in development)"
        )
        return None
    faults = build_faults(settings)
    app.state.faults = faults
    app.include_router(fault_routes(settings.admin_token.get_secret_value()))
    return faults


async def _start_alerts(
    app: FastAPI, stack: AsyncExitStack, *, settings: Settings, telemetry: Telemetry | None
) -> None:
    """The in-process engine in fully embedded mode; elsewhere only a reader of its store,
    for ``/alerts``, when admin routes are on."""
    if runs_in_process(settings.alerts, embedded=settings.embedded):
        scrape = telemetry.scrape_source if telemetry is not None else None
        engine_state(app).monitor = await stack.enter_async_context(
            embedded_engine(
                settings.alerts,
                metrics=metrics_of(app),
                collectors=[scrape] if scrape is not None else [],
                instance=telemetry.instance_id if telemetry is not None else "local",
            )
        )
    elif settings.admin_token is not None:
        engine_state(app).store = await stack.enter_async_context(store_reader(settings.alerts))


def _error(status_code: int, detail: str, **extra: Any) -> JSONResponse:
    code = _STATUS_CODES.get(status_code, "error")
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status_code)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = {"error": exc.code, "detail": exc.detail}
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if isinstance(exc, TooManyRequests | Overloaded):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        endpoint = AUTH_ENDPOINTS.get(request.url.path)
        services = getattr(request.app.state, "services", None)
        if endpoint is not None and services is not None:
            count_attempt(services, endpoint, "invalid")
        # The submitted values are left out on purpose: they may be passwords or tokens.
        errors = []
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ())]
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            if error.get("type") == "json_invalid":
                location, message = ["body"], "malformed JSON body"
            errors.append(
                {"field": ".".join(location), "message": message, "type": error.get("type")}
            )
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return _error(422, summary, errors=errors)

    outage = OutageLog(log)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OSError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        outage.failed("database unavailable on %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse(
            {"error": "database_unavailable", "detail": "the database is unreachable; retry"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection lost in the middle of a statement (the server died) is an outage too.
        if exc.connection_invalidated:
            return await database_unavailable(request, exc)
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The engine hides SQL parameters, so the traceback carries no user data.
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return _error(500, "internal error")
