"""Where the stages of delivery are put together, in the order they run.

    notification ─▶ Route ─▶ Dedup ─▶ Silence ─▶ Inhibit ─▶ Render ─▶ (group or queue)
    due delivery ─▶ Fence ─▶ the notifier's send ─▶ Retry ─▶ Count ─▶ (journal, dequeue)

A new stage (flap damping) is one class in ``alerts.delivery.stages`` and one line here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.delivery.inhibition import Inhibitor
from alerts.delivery.links import Links
from alerts.delivery.retry import RetryPolicy
from alerts.delivery.routing import Router
from alerts.delivery.stages import (
    Attempt,
    Count,
    Dedup,
    Fence,
    Inhibit,
    Intake,
    PeerLog,
    Render,
    Retry,
    Route,
    Silence,
    Stage,
    count,
)
from alerts.metrics import EngineMetrics
from alerts.silences.silence import Silences
from alerts.store.lease import Lease


@dataclass(frozen=True)
class Pipeline:
    """The stages, and those the outbox also asks directly (where an alert goes, what its
    payload is, how long this engine may still send, what peers delivered)."""

    route: Route
    inhibit: Inhibit
    render: Render
    fence: Fence
    peers: PeerLog
    intake: tuple[Stage[Intake], ...]
    before_send: tuple[Stage[Attempt], ...]
    after_send: tuple[Stage[Attempt], ...]


def compose(
    *,
    receivers: Iterable[str],
    metrics: EngineMetrics | None = None,
    retry: RetryPolicy = RetryPolicy(),
    lease: Lease | None = None,
    router: Router | None = None,
    silences: Silences | None = None,
    links: Links = Links(),
    inhibitor: Inhibitor | None = None,
) -> Pipeline:
    route = Route(tuple(sorted(receivers)), router)
    render = Render(links)
    fence = Fence(lease, retry.timeout)
    peers = PeerLog()
    silence = Silence(silences, functools.partial(count, metrics))
    inhibit = Inhibit(inhibitor, functools.partial(count, metrics))
    return Pipeline(
        route=route,
        inhibit=inhibit,
        render=render,
        fence=fence,
        peers=peers,
        intake=(route, Dedup(peers), silence, inhibit, render),
        before_send=(fence,),
        after_send=(Retry(retry), Count(metrics)),
    )
