"""The console's pages under ``/console``: overview, alerts, silences, history, traces and
receivers, server-rendered (Jinja2), behind a sign-in with the admin token.

    mount_console(app, admin_token=token, alerts=settings.alerts, traces_file=path)

Every page is sent with a Content-Security-Policy that allows scripts, styles and requests
from this origin only (no inline script, no inline style), is never cached, and cannot be
framed. Every form carries a CSRF token; bad input is answered on the page with the API's
message. The data come from the engine of the app (``alerts.http.state``): the one running
in this process, or else its store and Prometheus.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from starlette.datastructures import FormData

from alerts.http.app import app_store
from alerts.http.silences import AckIn, Quieting
from alerts.settings import AlertSettings
from console import data
from console.session import COOKIE, LIFETIME_SECONDS, LOGIN_CSRF_COOKIE, Session, SessionKeys

log = logging.getLogger("dynoscope.console")

PREFIX = "/console"
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
PAGES = (
    ("overview", "Overview", ""),
    ("alerts", "Alerts", "/alerts"),
    ("silences", "Silences", "/silences"),
    ("history", "History", "/history"),
    ("traces", "Traces", "/traces"),
    ("receivers", "Receivers", "/receivers"),
)

_templates = Environment(
    loader=PackageLoader("console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Console:
    """The pages of one app, with what they read."""

    def __init__(
        self,
        app: FastAPI,
        *,
        admin_token: str,
        alerts: AlertSettings,
        traces_file: str,
        secure_cookies: bool = False,
    ) -> None:
        self.app = app
        # Behind a proxy that ends TLS the app may see http: production says Secure anyway.
        self.secure_cookies = secure_cookies
        self.keys = SessionKeys(admin_token)
        self.alerts = alerts
        self.traces_file = traces_file
        self.quieting = Quieting(app, app_store)

    # --- rendering and sessions ------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        *,
        session: Session | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        page = _templates.get_template(template).render(
            prefix=PREFIX,
            pages=PAGES,
            path=request.url.path,
            csrf=self.keys.csrf(session) if session is not None else None,
            **context,
        )
        return HTMLResponse(page, status_code=status_code, headers=HEADERS)

    def session(self, request: Request) -> Session | None:
        return self.keys.verify(request.cookies.get(COOKIE), time.time())

    async def form(self, request: Request, session: Session) -> FormData:
        """The posted form, once its CSRF token matches the session's (else 403)."""
        form = await request.form()
        offered = form.get("csrf")
        if not self.keys.csrf_matches(session, offered if isinstance(offered, str) else None):
            raise HTTPException(403, "the form's CSRF token does not match this session")
        return form


Page = Callable[[Request, Session], Awaitable[Response]]


def mount_console(
    app: FastAPI,
    *,
    admin_token: str,
    alerts: AlertSettings,
    traces_file: str,
    secure_cookies: bool = False,
) -> Console:
    """Add ``/console`` and its static files to ``app``; ``secure_cookies``: the session
    cookie only over HTTPS (production), whatever scheme the app sees."""
    console = Console(
        app, admin_token=admin_token, alerts=alerts, traces_file=traces_file,
        secure_cookies=secure_cookies,
    )  # fmt: skip
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")

    def page(path: str, *, methods: tuple[str, ...] = ("GET",)) -> Callable[[Page], Page]:
        """A page that needs a session: without one, GET goes to the sign-in, POST is a 401."""

        def register(handler: Page) -> Page:
            async def route(request: Request) -> Response:
                session = console.session(request)
                if session is None:
                    if request.method != "GET":  # a form sent after the session ended
                        return console.render(
                            request, "error.html", session=None, status_code=401,
                            detail="Your console session has ended: sign in again.",
                        )  # fmt: skip
                    target = quote(str(request.url.path) + _query(request), safe="")
                    return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
                try:
                    return await handler(request, session)
                except HTTPException as exc:
                    return console.render(
                        request, "error.html", session=session,
                        status_code=exc.status_code, detail=exc.detail,
                    )  # fmt: skip

            app.add_api_route(PREFIX + path, route, methods=list(methods), include_in_schema=False)
            return handler

        return register

    _sign_in(app, console)

    @page("")
    async def overview(request: Request, session: Session) -> Response:
        card = await data.scorecard(app, console.alerts)
        return console.render(
            request, "overview.html", session=session, card=card, charts=data.CHARTS
        )

    @page("/series.json")
    async def series(request: Request, session: Session) -> Response:
        name = request.query_params.get("chart", "")
        chart = next((c for c in data.CHARTS if c.name == name), None)
        if chart is None:
            return JSONResponse({"error": "not_found", "detail": f"no chart {name!r}"}, 404)
        found = await data.chart_series(app, console.alerts, chart, now=datetime.now(UTC))
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    @page("/alerts")
    async def alert_list(request: Request, session: Session) -> Response:
        found = await data.active_alerts(app, console.alerts)
        return console.render(request, "alerts.html", session=session, alerts=found)

    @page("/alerts/{fingerprint}")
    async def alert(request: Request, session: Session) -> Response:
        fingerprint = request.path_params["fingerprint"]
        found = await data.active_alerts(app, console.alerts, with_context=fingerprint)
        one = next((a for a in found if a.fingerprint == fingerprint), None)
        if one is None:
            raise HTTPException(404, "no pending or firing alert with this fingerprint")
        return console.render(request, "alert.html", session=session, alert=one)

    @page("/alerts/{fingerprint}/ack", methods=("POST",))
    async def acknowledge(request: Request, session: Session) -> Response:
        form = await console.form(request, session)
        fingerprint = request.path_params["fingerprint"]
        try:
            body = AckIn(author=str(form.get("author", "")), comment=str(form.get("comment", "")))
            await console.quieting.acknowledge(fingerprint, body)
        except (ValidationError, HTTPException) as exc:
            found = await data.active_alerts(app, console.alerts, with_context=fingerprint)
            one = next((a for a in found if a.fingerprint == fingerprint), None)
            if one is None:
                raise HTTPException(
                    404, "no pending or firing alert with this fingerprint"
                ) from None
            return console.render(
                request, "alert.html", session=session, alert=one,
                errors=data.messages(exc), status_code=422,
            )  # fmt: skip
        return RedirectResponse(f"{PREFIX}/alerts/{fingerprint}?acknowledged=1", 303)

    @page("/silences")
    async def silences(request: Request, session: Session) -> Response:
        matchers = request.query_params.getlist("matcher")
        return console.render(
            request, "silences.html", session=session,
            silences=await console.quieting.current(), form=data.silence_form(matchers),
        )  # fmt: skip

    @page("/silences", methods=("POST",))
    async def make_silence(request: Request, session: Session) -> Response:
        form = await console.form(request, session)
        filled = data.silence_form_from(form)
        try:
            await console.quieting.add(data.silence_in(filled, now=datetime.now(UTC)))
        except (ValidationError, ValueError, HTTPException) as exc:
            return console.render(
                request, "silences.html", session=session, status_code=422,
                silences=await console.quieting.current(), form=filled,
                errors=data.messages(exc),
            )  # fmt: skip
        return RedirectResponse(f"{PREFIX}/silences?made=1", 303)

    @page("/silences/check", methods=("POST",))
    async def check_matchers(request: Request, session: Session) -> Response:
        form = await console.form(request, session)
        errors = data.matcher_errors(str(form.get("matchers", "")))
        return console.render(request, "_matcher_check.html", session=session, errors=errors)

    @page("/silences/{silence_id}/expire", methods=("POST",))
    async def expire(request: Request, session: Session) -> Response:
        await console.form(request, session)
        await console.quieting.expire(request.path_params["silence_id"])
        return RedirectResponse(f"{PREFIX}/silences?expired=1", 303)

    @page("/history")
    async def history(request: Request, session: Session) -> Response:
        filters = data.HistoryFilter.of(request.query_params)
        entries, deliveries = await data.history(app, filters)
        return console.render(
            request, "history.html", session=session, filters=filters, entries=entries,
            deliveries=deliveries,
        )  # fmt: skip

    @page("/traces")
    async def traces(request: Request, session: Session) -> Response:
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            return RedirectResponse(f"{PREFIX}/traces/{quote(wanted, safe='')}", 303)
        found = data.slowest_traces(console.traces_file)
        return console.render(request, "traces.html", session=session, traces=found)

    @page("/traces/{trace_id}")
    async def trace(request: Request, session: Session) -> Response:
        found = data.waterfall(console.traces_file, request.path_params["trace_id"])
        if found is None:
            raise HTTPException(404, "no single trace with this id (or id prefix)")
        return console.render(request, "trace.html", session=session, trace=found)

    @page("/receivers")
    async def receivers(request: Request, session: Session) -> Response:
        return console.render(
            request, "receivers.html", session=session, receivers=data.receivers(console.alerts)
        )

    @page("/receivers/{name}/test", methods=("POST",))
    async def test_receiver(request: Request, session: Session) -> Response:
        await console.form(request, session)
        outcome = await data.send_test(console.alerts, request.path_params["name"])
        return console.render(
            request, "receivers.html", session=session,
            receivers=data.receivers(console.alerts), outcome=outcome,
        )  # fmt: skip

    return console


def _sign_in(app: FastAPI, console: Console) -> None:
    @app.get(f"{PREFIX}/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return _login_form(console, request, status_code=200)

    @app.post(f"{PREFIX}/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        offered = form.get("csrf")
        wanted = str(form.get("next") or PREFIX)
        if not expected or not isinstance(offered, str) or offered != expected:
            return _login_form(
                console, request, status_code=403, target=wanted,
                error="The sign-in form expired: try again.",
            )  # fmt: skip
        token = form.get("token")
        if not isinstance(token, str) or not console.keys.token_matches(token):
            log.warning("console: a sign-in with a wrong admin token")
            return _login_form(
                console, request, status_code=401, target=wanted,
                error="That is not this deployment's admin token (ADMIN_TOKEN).",
            )  # fmt: skip
        target = wanted if wanted.startswith(PREFIX) else PREFIX  # never an open redirect
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, console.keys.issue(time.time()), max_age=LIFETIME_SECONDS, path=PREFIX,
            httponly=True, samesite="strict", secure=_secure(console, request),
        )  # fmt: skip
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
        return response

    @app.post(f"{PREFIX}/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        session = console.session(request)
        if session is not None:
            try:
                await console.form(request, session)
            except HTTPException as exc:
                return console.render(
                    request, "error.html", session=session, status_code=exc.status_code,
                    detail=exc.detail,
                )  # fmt: skip
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response


def _login_form(
    console: Console,
    request: Request,
    *,
    status_code: int,
    error: str | None = None,
    target: str | None = None,
) -> Response:
    nonce = secrets.token_urlsafe(16)
    target = target or request.query_params.get("next") or PREFIX
    if not target.startswith(PREFIX):  # never an open redirect
        target = PREFIX
    response = console.render(
        request, "login.html", session=None, status_code=status_code, error=error,
        login_csrf=nonce, next=target,
    )  # fmt: skip
    response.set_cookie(
        LOGIN_CSRF_COOKIE, nonce, max_age=3600, path=PREFIX, httponly=True, samesite="strict",
        secure=_secure(console, request),
    )  # fmt: skip
    return response


def _secure(console: Console, request: Request) -> bool:
    return console.secure_cookies or request.url.scheme == "https"


def _query(request: Request) -> str:
    return f"?{request.url.query}" if request.url.query else ""
