"""``GET /properties/events``: server-sent events for property changes on any instance."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import ServicesDep

router = APIRouter(tags=["properties"])


@router.get("/properties/events", response_class=EventSourceResponse)
async def property_events(services: ServicesDep) -> EventSourceResponse:
    """Stream ``property.created|updated|deleted`` events.

    The first event, ``ready``, is sent once the subscription is live: a change made after
    it arrives is delivered.
    """
    broadcaster = services.broadcaster

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with broadcaster.subscribe() as events:
            if not await broadcaster.ready(within=services.settings.readiness_timeout_seconds):
                yield ServerSentEvent(event="error", data='{"error":"events_unavailable"}')
                return
            yield ServerSentEvent(event="ready", data="{}")
            async for event in events:
                yield ServerSentEvent(event=event.type, id=str(event.id), data=event.to_json())

    return EventSourceResponse(stream(), ping=15)
