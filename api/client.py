"""Who the client is, as the load balancer sees it, and the headers every response carries.

``X-Forwarded-For`` is believed only when the request comes from a proxy listed in
``TRUSTED_PROXIES`` (uvicorn's ``ProxyHeadersMiddleware`` does the parsing: the client is the
right-most address that is not a trusted proxy; ``api.app`` mounts it), so no client can forge
the header to escape a rate limit. Without trusted proxies the socket's address is the client.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every response: a browser never guesses a type
    the API did not declare (pure ASGI, one header appended)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), NOSNIFF]
            await send(message)

        await self.app(scope, receive, sending)
