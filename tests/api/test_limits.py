"""A client that sends its whole oversized body first still reads the 413 (real uvicorn)."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

from tests.support.stack import served_app

FIVE_MB = 5 * 1024 * 1024


def _big_json() -> bytes:
    return json.dumps({"title": "x", "description": "y" * FIVE_MB}).encode()


def _post_with_urllib(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post_then_reuse(host: str, port: int, body: bytes, *, chunked: bool) -> list[int]:
    """POST ``body`` (whole, or in chunks), then GET /healthz on the same connection."""

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(
            "POST",
            "/properties",
            body=chunks() if chunked else body,
            headers={"Content-Type": "application/json"},
            encode_chunked=chunked,
        )
        response = connection.getresponse()
        statuses = [response.status]
        assert json.loads(response.read())["error"] == "payload_too_large"
        connection.request("GET", "/healthz")
        statuses.append(connection.getresponse().status)
        return statuses
    finally:
        connection.close()


async def test_a_5_mb_body_from_urllib_gets_a_readable_413(
    sqlite_environ: dict[str, str],
) -> None:
    async with served_app(sqlite_environ) as api:
        url = str(api.client.base_url).rstrip("/") + "/properties"
        status, _, body = await asyncio.to_thread(_post_with_urllib, url, _big_json())
        assert status == 413
        assert json.loads(body) == {
            "error": "payload_too_large",
            "detail": "request body exceeds 1048576 bytes",
        }


async def test_after_the_413_the_connection_stays_usable(sqlite_environ: dict[str, str]) -> None:
    async with served_app(sqlite_environ) as api:
        host, port = api.client.base_url.host, api.client.base_url.port
        assert port is not None
        for chunked in (False, True):
            statuses = await asyncio.to_thread(
                _post_then_reuse, host, port, _big_json(), chunked=chunked
            )
            assert statuses == [413, 200], f"chunked={chunked}"
