"""Admission by queueing delay: a request finding every slot taken waits (first come, first
served) up to ``max_wait`` and is shed only past it, or at once when the wait queue is full;
health and metrics never wait. The handlers hold their slots on an event the test sets, so
what happens follows from the order of events, not from a clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.admission import AdmissionControl

SLOTS = 2


class Work:
    """Requests to ``/work`` hold their slot until ``done`` is set."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.started = 0

    async def handle(self, request: Request) -> PlainTextResponse:
        self.started += 1
        await self.done.wait()
        return PlainTextResponse("done")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def work() -> Work:
    return Work()


def admission(work: Work, *, max_wait: float, max_queue: int) -> AdmissionControl:
    app = Starlette(
        routes=[Route("/work", work.handle), Route("/healthz", health), Route("/metrics", health)]
    )
    return AdmissionControl(
        app, max_in_flight=SLOTS, retry_after=1, max_wait=max_wait, max_queue=max_queue
    )


@pytest.fixture
async def client(work: Work) -> AsyncIterator[tuple[httpx.AsyncClient, AdmissionControl]]:
    gate = admission(work, max_wait=30.0, max_queue=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://t") as c:
        yield c, gate


async def until(condition: object, what: str) -> None:
    for _ in range(2000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def test_a_burst_the_worker_can_drain_in_time_is_served_whole(
    client: tuple[httpx.AsyncClient, AdmissionControl], work: Work
) -> None:
    http, gate = client
    burst = [asyncio.create_task(http.get("/work")) for _ in range(SLOTS + 3)]
    await until(lambda: gate.in_flight == SLOTS and gate.waiting == 3, "slots full, 3 waiting")
    assert work.started == SLOTS  # the others wait for a slot, not in the handler
    work.done.set()  # the slots free before anyone has waited max_wait
    answers = await asyncio.gather(*burst)
    assert [a.status_code for a in answers] == [200] * (SLOTS + 3)
    assert gate.in_flight == 0 and gate.waiting == 0


async def test_a_full_queue_sheds_at_once_and_health_never_waits(
    client: tuple[httpx.AsyncClient, AdmissionControl], work: Work
) -> None:
    http, gate = client
    held = [asyncio.create_task(http.get("/work")) for _ in range(SLOTS + 3)]
    await until(lambda: gate.in_flight == SLOTS and gate.waiting == 3, "slots full, 3 waiting")
    # The queue is full: the next ones are refused without waiting (max_wait is 30 s here).
    for _ in range(3):
        shed = await http.get("/work")
        assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
        assert shed.json()["error"] == "overloaded"
    for path in ("/healthz", "/metrics"):
        assert (await http.get(path)).status_code == 200
    assert gate.waiting == 3  # nobody joined the queue
    work.done.set()
    assert [a.status_code for a in await asyncio.gather(*held)] == [200] * (SLOTS + 3)


async def test_a_sustained_overload_is_shed_after_the_wait_with_retry_after(work: Work) -> None:
    waited: list[float] = []
    gate = admission(work, max_wait=0.05, max_queue=8)
    gate._on_wait = waited.append
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        held = [asyncio.create_task(http.get("/work")) for _ in range(SLOTS)]
        await until(lambda: gate.in_flight == SLOTS, "slots full")
        shed = await asyncio.gather(*(http.get("/work") for _ in range(4)))
        assert [s.status_code for s in shed] == [503] * 4
        assert all(s.headers["retry-after"] == "1" for s in shed)
        assert len(waited) == 4 and all(w >= 0.04 for w in waited)  # each waited its turn
        assert gate.waiting == 0 and work.started == SLOTS
        assert len(gate._waiting) == 0  # those that gave up left the queue
        work.done.set()
        assert [a.status_code for a in await asyncio.gather(*held)] == [200] * SLOTS
    assert gate.in_flight == 0


async def test_a_client_gone_while_waiting_leaves_no_slot_behind(
    client: tuple[httpx.AsyncClient, AdmissionControl], work: Work
) -> None:
    http, gate = client
    held = [asyncio.create_task(http.get("/work")) for _ in range(SLOTS)]
    await until(lambda: gate.in_flight == SLOTS, "slots full")
    gone = asyncio.create_task(http.get("/work"))
    await until(lambda: gate.waiting == 1, "one waiting")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert gate.waiting == 0
    work.done.set()
    await asyncio.gather(*held)
    assert gate.in_flight == 0  # the slot it never took is not lost either
    assert (await http.get("/work")).status_code == 200
    assert gate.in_flight == 0
