"""Two instances sharing PostgreSQL and Redis behave as one service."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis_server import RedisServer
from tests.support.stack import Running, served_app
from tests.support.users import listing, register_and_login


@pytest.fixture
async def pair(
    shared_environ: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[Running, Running]]:
    """Two instances of one deployment: shared database and Redis, a trace file each."""
    a_environ = {**shared_environ, "DYNOSCOPE_TRACES_FILE": str(tmp_path / "a-traces.jsonl")}
    b_environ = {**shared_environ, "DYNOSCOPE_TRACES_FILE": str(tmp_path / "b-traces.jsonl")}
    async with served_app(a_environ) as a, served_app(b_environ) as b:
        yield a, b


async def test_login_on_a_refresh_on_b_use_on_a(pair: tuple[Running, Running]) -> None:
    a, b = pair
    tokens = await register_and_login(a.client)
    refreshed = await b.client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    created = await a.client.post("/properties", json=listing(), headers=headers)
    assert created.status_code == 201
    replay_on_a = await a.client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert replay_on_a.status_code == 401


async def test_create_on_a_is_listed_on_b_at_once(pair: tuple[Running, Running]) -> None:
    a, b = pair
    owner = await register_and_login(a.client)
    # Warm B's view of the list (and the shared cache) first.
    before = await b.client.get("/properties?city=Lisbon")
    assert before.json()["items"] == []
    created = await a.client.post(
        "/properties", json=listing(city="Lisbon"), headers=owner["headers"]
    )
    after = await b.client.get("/properties?city=Lisbon")
    assert [item["id"] for item in after.json()["items"]] == [created.json()["id"]]

    await a.client.patch(
        f"/properties/{created.json()['id']}", json={"price": 1}, headers=owner["headers"]
    )
    assert (await b.client.get("/properties?city=Lisbon")).json()["items"][0]["price"] == 1
    assert (await b.client.get(f"/properties/{created.json()['id']}")).json()["price"] == 1

    await a.client.delete(f"/properties/{created.json()['id']}", headers=owner["headers"])
    assert (await b.client.get("/properties?city=Lisbon")).json()["items"] == []


@contextlib.asynccontextmanager
async def event_reader(
    client: httpx.AsyncClient, out: list[dict[str, Any]], want: int
) -> AsyncIterator[asyncio.Task[None]]:
    """A task reading ``want`` events into ``out``, subscribed when the block starts; it is
    cancelled and awaited when the block ends, whether the test passed or not."""
    ready = asyncio.Event()
    reader = asyncio.create_task(_read_events(client, ready, out, want=want))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        yield reader
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read_events(
    client: httpx.AsyncClient, ready: asyncio.Event, out: list[dict[str, Any]], want: int
) -> None:
    async with client.stream("GET", "/properties/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_name = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event_name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event_name:
                if event_name == "ready":
                    ready.set()
                else:
                    out.append({"event": event_name, **json.loads(line.split(":", 1)[1])})
                    if len(out) == want:
                        return


async def test_sse_client_on_b_sees_changes_made_on_a(pair: tuple[Running, Running]) -> None:
    a, b = pair
    owner = await register_and_login(a.client)
    received: list[dict[str, Any]] = []
    async with event_reader(b.client, received, want=3) as reader:
        created = (
            await a.client.post("/properties", json=listing(), headers=owner["headers"])
        ).json()
        url = f"/properties/{created['id']}"
        await a.client.patch(url, json={"status": "sold"}, headers=owner["headers"])
        await a.client.delete(url, headers=owner["headers"])
        await asyncio.wait_for(asyncio.shield(reader), 5)

    assert [(e["event"], e["id"]) for e in received] == [
        ("property.created", created["id"]),
        ("property.updated", created["id"]),
        ("property.deleted", created["id"]),
    ]
    assert received[1]["data"]["status"] == "sold"
    assert received[2]["data"] is None


async def test_sse_subscription_survives_a_redis_restart(
    shared_environ: dict[str, str], private_redis: RedisServer
) -> None:
    environ = {
        **shared_environ,
        "REDIS_URL": private_redis.url,
        "REDIS_TIMEOUT": "0.2",
    }
    async with served_app(environ) as a, served_app(environ) as b:
        owner = await register_and_login(a.client)
        received: list[dict[str, Any]] = []
        async with event_reader(b.client, received, want=1) as reader:
            private_redis.stop(keep_data=False)
            private_redis.start()
            broadcaster = b.services.broadcaster
            # The listener notices the lost connection and subscribes again by itself.
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                await a.client.post("/properties", json=listing(), headers=owner["headers"])
                try:
                    await asyncio.wait_for(asyncio.shield(reader), 0.5)
                    break
                except TimeoutError:
                    assert asyncio.get_running_loop().time() < deadline, "no event after restart"
        assert received[0]["event"] == "property.created"
        assert await broadcaster.ready(within=1)
