"""The console's forms without a browser: a form sent without a session, or without the
session's CSRF token, is refused with a page saying so; the sign-in never redirects off the
console; every page carries the Content-Security-Policy."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from console.app import CSP
from tests.console.conftest import TOKEN
from tests.support.stack import Running, running_app


@pytest.fixture
async def api(sqlite_environ: dict[str, str]) -> AsyncIterator[Running]:
    async with running_app({**sqlite_environ, "ADMIN_TOKEN": TOKEN}) as running:
        yield running


async def _signed_in(api: Running, *, next_: str = "/console") -> str:
    """Sign in as a browser would; the session's CSRF token from a page."""
    form = await api.client.get("/console/login")
    assert form.headers["content-security-policy"] == CSP
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert nonce is not None
    answer = await api.client.post(
        "/console/login", data={"csrf": nonce.group(1), "token": TOKEN, "next": next_}
    )
    assert answer.status_code == 303, answer.text
    page = await api.client.get("/console/silences")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None and page.headers["content-security-policy"] == CSP
    return found.group(1)


async def test_a_form_without_a_session_or_its_csrf_token_is_refused_with_a_page(
    api: Running,
) -> None:
    anonymous = await api.client.post("/console/silences", data={"matchers": 'a="b"'})
    assert anonymous.status_code == 401
    assert "session has ended" in anonymous.text and anonymous.headers["content-type"].startswith(
        "text/html"
    )
    csrf = await _signed_in(api)
    forged = await api.client.post("/console/silences", data={"matchers": 'a="b"'})
    assert forged.status_code == 403 and "CSRF" in forged.text
    made = await api.client.post(
        "/console/silences",
        data={"csrf": csrf, "matchers": 'alertname="Nothing"', "duration": "1h", "author": "t"},
    )
    assert made.status_code == 303


async def test_the_sign_in_never_sends_anyone_off_the_console(api: Running) -> None:
    form = await api.client.get("/console/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert nonce is not None
    answer = await api.client.post(
        "/console/login",
        data={"csrf": nonce.group(1), "token": TOKEN, "next": "https://evil.example/"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
