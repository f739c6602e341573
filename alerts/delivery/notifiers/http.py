"""One JSON POST to a receiver, with the answer turned into ``NotificationError`` when refused.

5xx, 408 and 429 are worth asking again (``retryable``); other 4xx are payload or credential
errors that will not get better. A ``Retry-After`` header (seconds or an HTTP date) becomes
``retry_after``, which the outbox waits at least. The URL is never put in an error: webhook
URLs carry tokens.

    >>> retry_after_seconds("30")
    30.0
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from alerts.errors import NotificationError

MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (bounded to an hour); ``None`` if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


async def post_json(
    client: httpx.AsyncClient, url: str, body: Any, *, receiver: str, seconds: float
) -> httpx.Response:
    """POST ``body``; the response when it is 2xx, else ``NotificationError``."""
    try:
        response = await client.post(url, json=body, timeout=seconds)
    except httpx.TimeoutException:
        raise NotificationError(f"timed out after {seconds}s", receiver=receiver) from None
    except httpx.TransportError as exc:
        raise NotificationError(f"unreachable ({type(exc).__name__})", receiver=receiver) from None
    if response.status_code >= 300:
        retryable = response.status_code >= 500 or response.status_code in {408, 429}
        raise NotificationError(
            f"answered HTTP {response.status_code}",
            receiver=receiver,
            retryable=retryable,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
    return response
