"""Change events for ``GET /properties/events``, fanned out across instances.

Each process keeps one subscription (a Redis pub/sub connection, or nothing in embedded
mode) and hands every event to its local subscribers' queues, so a thousand SSE clients
cost one Redis connection, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("dynoscope.events")

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    type: str  # property.created | property.updated | property.deleted
    id: int
    data: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        payload = json.loads(raw)
        return cls(type=str(payload["type"]), id=int(payload["id"]), data=payload.get("data"))


ErrorHook = Callable[[str], None]


class Broadcaster(Protocol):
    def on_error(self, hook: ErrorHook) -> None:
        """Call ``hook(dependency)`` on each failed publish or lost subscription."""
        ...

    async def publish(self, event: Event) -> None: ...
    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Event]]: ...
    async def ready(self, within: float) -> bool: ...
    async def close(self) -> None: ...


class _FanOut:
    """Local subscriber queues; a slow subscriber loses events rather than stalling others."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    def deliver(self, event: Event) -> None:
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_SIZE)
        self._queues.add(queue)

        async def events() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)


class MemoryBroadcaster:
    """In-process broadcaster for embedded mode: only this process's clients hear events."""

    def __init__(self) -> None:
        self._fan_out = _FanOut()

    def on_error(self, hook: ErrorHook) -> None:
        return None  # nothing here can fail

    async def publish(self, event: Event) -> None:
        self._fan_out.deliver(event)

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Event]]:
        return self._fan_out.subscribe()

    async def ready(self, within: float) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisBroadcaster:
    """Publishes to a Redis channel; one listener task per process feeds local subscribers."""

    def __init__(self, *, publisher: Redis, listener: Redis, channel: str) -> None:
        self._publisher = publisher
        self._listener = listener
        self._channel = channel
        self._fan_out = _FanOut()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._publish_failing = False
        self._error_hook: ErrorHook = lambda dependency: None

    def on_error(self, hook: ErrorHook) -> None:
        self._error_hook = hook

    async def publish(self, event: Event) -> None:
        try:
            await self._publisher.publish(self._channel, event.to_json())
        except (RedisError, OSError) as exc:
            self._error_hook("redis_publish")
            if not self._publish_failing:
                log.warning("events: publish failed (%s); event dropped", type(exc).__name__)
            self._publish_failing = True
        else:
            self._publish_failing = False

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="dynoscope-events-listener")
        async with self._fan_out.subscribe() as events:
            yield events

    async def ready(self, within: float) -> bool:
        """Wait until the Redis subscription is active, so no event is missed after this."""
        try:
            await asyncio.wait_for(self._subscribed.wait(), within)
        except TimeoutError:
            return False
        return True

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self._listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    delay = 0.1
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            self._deliver(message["data"])
            except (RedisError, OSError) as exc:
                self._error_hook("redis_subscribe")
                if self._subscribed.is_set():
                    log.warning("events: subscription lost (%s); reconnecting", type(exc).__name__)
                self._subscribed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _deliver(self, raw: bytes | str) -> None:
        try:
            event = Event.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("events: ignored a malformed message on %s", self._channel)
            return
        self._fan_out.deliver(event)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
